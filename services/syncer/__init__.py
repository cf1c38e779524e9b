"""Syncer: consumes events, writes Postgres, calls the CRMs."""
