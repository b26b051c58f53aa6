"""The record of an activation or drill, its store, its HTML report and the report's signature."""
