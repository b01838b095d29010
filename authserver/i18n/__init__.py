"""Languages: which one a request gets, and the catalogs and Jinja2 environment that speak it."""
