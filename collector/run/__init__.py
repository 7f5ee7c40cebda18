"""One run: which windows each phase reads (plans, watermarks), how many at once (scheduler),
reading a window into its blobs, settling a day, and the runner that orders the steps of each
source. The top group: it may import every other."""
