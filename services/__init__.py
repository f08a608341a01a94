"""The Lvbao services: gateway (identity), activities, points, rewards. No service imports another."""
