"""What every registry-product test shares: the admin's credentials."""

ADMIN_PASSWORD = "Harbor12345"  # Harbor's documented default, so Harbor scripts' examples read the same
ADMIN = ("admin", ADMIN_PASSWORD)
