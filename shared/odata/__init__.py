"""OData v4 pieces shared by the /data endpoints: key predicates (keys.py) and entity set names (names.py)."""
