"""manxue: serve, route, meter and verify DeepSeek-class models behind one OpenAI API."""

import os

# llama.cpp's OpenMP threads spin while waiting by default; on a shared or busy CPU that slows
# decoding many times over. Set before anything imports llama_cpp; OMP_WAIT_POLICY=active
# in the environment restores spinning for dedicated cores.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

__version__ = "0.1.0"
