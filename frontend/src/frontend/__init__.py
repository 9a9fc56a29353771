"""sbcntr frontend: server-rendered HTML pages backed by the backend API."""
