"""One module per dashboard page: ``layout(ctx, portfolio)`` and, for pages with controls,
``register(app, ctx)`` for their callbacks."""
