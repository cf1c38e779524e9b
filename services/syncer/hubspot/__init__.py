"""HubSpot: real-time contact pushes (W3) and the batch sync (W4)."""
