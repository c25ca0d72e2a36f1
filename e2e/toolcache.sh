# Sourced by the scripts that build a tool from the Go module proxy (the
# func CLI, helm, gremlins). A fresh clone has an empty .cache/, and those
# builds take minutes on 2 cores (func: 175 s cold), so a built tool is also
# kept in a per-machine cache outside the clone, keyed by tool and version,
# and copied from there when another clone of the same machine needs it.
#
#   AUTOSCALER_TOOL_CACHE  the cache directory
#                          (default ${XDG_CACHE_HOME:-$HOME/.cache}/nvcf-autoscaler/tools);
#                          "off" turns the cache off
#
# A cached binary is only used when the caller's own version check accepts
# it, so a corrupt or stale entry is rebuilt, never trusted.

toolcache_dir() {
  local dir=${AUTOSCALER_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nvcf-autoscaler/tools}
  [ "$dir" = off ] && return 1
  echo "$dir"
}

# toolcache_get KEY DEST: copies the cached binary KEY to DEST; fails when
# there is none.
toolcache_get() {
  local dir
  dir=$(toolcache_dir) || return 1
  [ -x "$dir/$1" ] || return 1
  mkdir -p "$(dirname "$2")"
  cp "$dir/$1" "$2.tmp.$$" && mv "$2.tmp.$$" "$2"
}

# toolcache_has KEY: the cache holds KEY (a clone that built a tool before
# the cache existed fills it on its next run).
toolcache_has() {
  local dir
  dir=$(toolcache_dir) || return 0
  [ -x "$dir/$1" ]
}

# toolcache_put KEY SRC: stores SRC as KEY; a cache that cannot be written
# only costs the next clone a build.
toolcache_put() {
  local dir
  dir=$(toolcache_dir) || return 0
  mkdir -p "$dir" 2>/dev/null && cp "$2" "$dir/$1.tmp.$$" 2>/dev/null && mv "$dir/$1.tmp.$$" "$dir/$1" ||
    echo "tool cache $dir not writable; $1 not cached" >&2
}
