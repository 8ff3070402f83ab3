"""The live monitoring dashboard: a bus subscriber plus a web page. It never calls workers."""
