"""Real loopback servers for tests, benchmarks and demos: an upstream emulator and a runner."""
