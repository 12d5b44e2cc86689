"""The planner: what a model needs on given hardware, what a token costs, what margin a price
list yields. Pure functions over data files (plan/data/*.toml); no GPU needed.

    catalog.py      models and hardware (shipped + the user's TOML, config.json, GGUF)
    memory.py       weights, KV cache per token, fits, concurrent sequences
    throughput.py   roofline decode / prefill
    capacity.py     one deployment: memory + throughput
    economics.py    cost per 1M tokens, margins (`traffic_margin` takes ledger aggregates)
    day.py          DeepSeek's published day, recomputed
    build_vs_buy.py cloud vs self-host vs hybrid for a traffic profile
    calibration.py  estimates next to published measurements
    report.py       the JSON behind `manxue plan --json` and GET /v1/plan
"""
