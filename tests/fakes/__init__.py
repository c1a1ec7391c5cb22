"""Local stand-ins for the SaaS APIs the extractors call (Stripe, HubSpot, Google), for tests only."""
