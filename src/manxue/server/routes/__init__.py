"""One module per resource; each route parses, calls one service, returns."""
