// User-namespace id maps as the native jobs take them (lib/native/jobs.ts passes
// containerId, hostId, size triples), and the two directions of a lookup: the apply
// maps a tar's container ids to host ids, the packer host ids back to container ids.
// An empty map is the identity.
#pragma once
#include <cstdint>
#include <vector>

namespace ogd {

struct IdRange {
  uint64_t container;
  uint64_t host;
  uint64_t size;
};

// The id `id` names in the maps' `from` column, in their `to` column; false when the
// maps hold none.
inline bool MapId(const std::vector<IdRange>& maps, uint64_t id, uint64_t IdRange::*from, uint64_t IdRange::*to, uint64_t& out) {
  if (maps.empty()) {
    out = id;
    return true;
  }
  for (const IdRange& m : maps) {
    if (id >= m.*from && id < m.*from + m.size) {
      out = m.*to + (id - m.*from);
      return true;
    }
  }
  return false;
}

// The host id of container id `id` (a tar's owner, applied).
inline bool ToHost(const std::vector<IdRange>& maps, uint64_t id, uint64_t& out) { return MapId(maps, id, &IdRange::container, &IdRange::host, out); }

// The container id of host id `id` (a file's owner, packed).
inline bool ToContainer(const std::vector<IdRange>& maps, uint64_t id, uint64_t& out) { return MapId(maps, id, &IdRange::host, &IdRange::container, out); }

}  // namespace ogd
