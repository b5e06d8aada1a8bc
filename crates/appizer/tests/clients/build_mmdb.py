"""Writes a small MaxMind-format City database for the GeoIP test.

Usage: python build_mmdb.py OUT.mmdb
203.0.113.0/24 is Paris, Ile-de-France, France; 198.51.100.0/24 is Austin, Texas, US.
"""

import sys

from mmdb_writer import MMDBWriter
from netaddr import IPSet

writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City", languages=["en"], description="appizer test")
writer.insert_network(
    IPSet(["203.0.113.0/24"]),
    {
        "country": {"iso_code": "FR", "names": {"en": "France"}},
        "subdivisions": [{"iso_code": "IDF", "names": {"en": "Ile-de-France"}}],
        "city": {"names": {"en": "Paris"}},
    },
)
writer.insert_network(
    IPSet(["198.51.100.0/24"]),
    {
        "country": {"iso_code": "US", "names": {"en": "United States"}},
        "subdivisions": [{"iso_code": "TX", "names": {"en": "Texas"}}],
        "city": {"names": {"en": "Austin"}},
    },
)
writer.to_db_file(sys.argv[1])
