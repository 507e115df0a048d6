"""The API's routers, thin: they parse, call the session manager or the model, and format (docs/serve.md)."""
