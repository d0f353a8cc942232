"""The HTTP server: application factory, lifecycle and (later) routes and auth."""
