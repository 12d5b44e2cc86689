"""Wire formats shared by every layer: requests, responses, SSE framing."""
