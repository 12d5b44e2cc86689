from manxue.cli import main

main()
