"""Many tenants: the timer's fan-out of one queue message per customer tenant, and the poison
queue. Imports only ``core``."""
