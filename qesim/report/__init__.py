"""Tables, plots, HTML report."""
