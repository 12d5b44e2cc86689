"""The web pages the gateway serves (chat, verify, dashboard, plan): HTML here, assets in static/.

Served by manxue.server.routes.web; nothing to build: HTML, CSS and JavaScript modules, with
the third-party libraries vendored in static/vendor/ (see the README.txt there). Each page is a
Jinja template extending base.html (the head and navigation they share), rendered once when
the gateway starts.
"""
