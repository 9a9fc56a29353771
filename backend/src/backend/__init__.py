"""sbcntr backend: the JSON API for items and notifications, with its database."""
