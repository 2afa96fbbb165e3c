"""The FreeSWITCH event socket: pure framing and parsing, and the connection supervisor."""
