"""The web pages the gateway serves (chat, verify, dashboard, plan): HTML here, assets in static/.

Served by manxue.server.routes.web; nothing to build: plain HTML, CSS and JavaScript modules,
with the third-party libraries vendored in static/vendor/ (see the README.txt there).
"""
