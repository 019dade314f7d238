"""Connections and migrations for the SQL databases that store and queue share."""
