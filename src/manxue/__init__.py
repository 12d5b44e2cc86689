"""manxue: serve, route, meter and verify DeepSeek-class models behind one OpenAI API."""

__version__ = "0.1.0"
