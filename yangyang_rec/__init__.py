"""yangyang_rec: records a county office's administrative phone lines on FreeSWITCH."""

__version__ = "0.1.0"
