"""The HTTP server: the services' lifecycle, the application (the proxy and the management
API behind one dispatcher), its error handlers, and the runner that serves it."""
