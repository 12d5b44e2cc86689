"""Real loopback servers for tests, benchmarks and demos: an upstream emulator, a runner, and
the verifier's test bench (verify_bench)."""
