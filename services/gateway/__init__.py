"""The gateway: identity, WeChat login, roster, devices and the signing keys for every token."""
