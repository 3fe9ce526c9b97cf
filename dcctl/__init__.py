"""dcctl: keep a backup datacenter ready to take over."""
__version__ = "0.1.0"
