"""The registry product's metadata model (users, projects, artifacts, policies) over SQLAlchemy."""
