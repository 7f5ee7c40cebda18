"""Talking to Microsoft Graph: the client (paging, retries, Graph's errors), the request budget,
and pacing windows to that budget. Imports only ``core``."""
