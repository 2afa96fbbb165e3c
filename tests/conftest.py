"""Shared pytest set-up. Fixture modules of each area are listed here so every test can use them."""

pytest_plugins: list[str] = ["tests.s3_fixtures", "tests.standin_fixtures", "tests.recorder_fixtures"]
