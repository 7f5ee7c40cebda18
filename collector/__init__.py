"""Teams call-log collector: Microsoft Graph call logs archived as partitioned JSONL blobs."""
