"""`qesim explore`: a local web app over the cost model (see qesim.explore.app)."""
