"""Map: count the words of one text file into counts.json."""

import collections
import json
import re
import sys

with open(sys.argv[1], encoding="utf-8") as fh:
    words = re.findall(r"[a-z']+", fh.read().lower())
with open("counts.json", "w", encoding="utf-8") as out:
    json.dump(collections.Counter(words), out, sort_keys=True)
