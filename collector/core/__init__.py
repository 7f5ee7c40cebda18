"""The collector's vocabulary, shared by every other group: settings, the sources table, lanes,
time windows and row placement, the time format, errors, and the identity's credentials.
Imports nothing from the other groups."""
