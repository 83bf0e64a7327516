"""The Lua scripts of the Redis directory (:mod:`._redis` documents the keys they use).

Each runs atomically in Redis. The ones a process runs all the time (renewal, assertion,
reaping) also keep Redis's own clock of when it last heard from anyone (``P seen``) and
when it came back after hearing from nobody for half a lease (``P back``): a Redis that
was paused, or cut off from every process, is noticed on its return, whatever the
processes' clocks say (a script runs on Redis's time, not on the time its caller
composed it).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ASSERT",
    "CLAIM",
    "KEEP_TOKEN",
    "REAP",
    "RELEASE",
    "RENEW",
    "TAKE",
    "TOMBSTONE_MS",
    "UNREGISTER",
]

#: Milliseconds a reaped session's tombstone (``P reaped:<origin>``) lives: a process cut
#: off for less than this that comes back has its users' rooms told they joined again.
TOMBSTONE_MS: Final = 3_600_000

# home(p, s): the process holding session s: its ``home`` (a process that took it over,
# by its token or from a dead process), else the prefix of its id (``<origin>.<n>``).
# alive(p, s): whether session s belongs to a process with a lease.
# stamp(): Redis's time in microseconds, a 16-digit string: when a nick was claimed.
# clock(p, gap): Redis's time in ms; marks Redis as back when nobody spoke for ``gap`` ms.
_COMMON: Final = """
local function home(p, s)
  return redis.call('HGET', p .. 'session:' .. s, 'home') or string.match(s, '^([^.]+)%.')
end
local function alive(p, s)
  local origin = home(p, s)
  return origin ~= nil and redis.call('EXISTS', p .. 'proc:' .. origin) == 1
end
local function stamp()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end
local function clock(p, gap)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local seen = tonumber(redis.call('GET', p .. 'seen'))
  redis.call('SET', p .. 'seen', string.format('%.0f', now))
  if seen == nil or now - seen > gap then
    redis.call('SET', p .. 'back', string.format('%.0f', now))
  end
  return now
end
"""

# guest(p, s): give session s the next free guest nick (its old nick is somebody else's
# now), and queue the change for its process: ``<id> <guest> <stamp>``.
_GUEST: Final = """
local function guest(p, s)
  while true do
    local nick = 'guest' .. redis.call('INCR', p .. 'guests')
    local key = p .. 'nick:' .. nick
    local owner = redis.call('GET', key)
    if not owner or not alive(p, owner) then
      local ts = stamp()
      redis.call('SET', key, s)
      redis.call('HSET', p .. 'session:' .. s, 'nick', nick, 'nk', nick, 'ts', ts)
      local origin = home(p, s)
      redis.call('RPUSH', p .. 'evicted:' .. origin, s .. ' ' .. nick .. ' ' .. ts)
      return nick
    end
  end
end
"""

# KEYS: the new nick's key, the old one's (or the same); ARGV: session id, prefix.
# Returns the claim's stamp, or 0 when another live session owns the nick.
CLAIM: Final = (
    _COMMON
    + """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] and alive(ARGV[2], owner) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
if KEYS[2] ~= KEYS[1] and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return stamp()
"""
)

# KEYS: a nick's key; ARGV: the session id.
RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# What renewing and asserting return last: the renames queued for this process, and
# its sessions that other processes took by their tokens.
_EVICTED: Final = """
local queue = p .. 'evicted:' .. origin
local evicted = redis.call('LRANGE', queue, 0, -1)
if #evicted > 0 then redis.call('DEL', queue) end
local hq = p .. 'handed:' .. origin
local handed = redis.call('LRANGE', hq, 0, -1)
if #handed > 0 then redis.call('DEL', hq) end
"""

# Renew this process's lease: {1 or 0 (it was gone: the caller re-asserts everything),
# the renames queued for it}. ARGV: lease ms, lease end ms, the prefix, the origin.
RENEW: Final = (
    _COMMON
    + """
local p, origin = ARGV[3], ARGV[4]
clock(p, tonumber(ARGV[1]) / 2)
local held = redis.call('SET', p .. 'proc:' .. origin, '1', 'PX', ARGV[1], 'XX')
redis.call('ZADD', p .. 'procs', ARGV[2], origin)
"""
    + _EVICTED
    + """
if held then return {1, evicted, handed} end
return {0, evicted, handed}
"""
)

# Write the lease and sessions. Returns {whether the lease was there before (1 or 0), the
# renames queued for this process, the ids that had been reaped (their rooms were told
# they left), the ids other processes took}. A session another process holds now (its
# ``home``) is left alone; one this process took over gets its ``home`` written. Of two
# live sessions with the same nick (one claimed it while Redis had lost the other's), the
# earlier claim keeps it and the other gets a guest nick.
# ARGV: lease ms, lease end ms, the prefix, the origin, then seven per session: id, nick
# key, nick, room, kind, claim stamp, its token's digest ('': none; written when Redis
# lost it, so that a session still resumes on another process after a Redis restart).
ASSERT: Final = (
    _COMMON
    + _GUEST
    + """
local p, origin = ARGV[3], ARGV[4]
clock(p, tonumber(ARGV[1]) / 2)
local held = redis.call('EXISTS', p .. 'proc:' .. origin)
redis.call('SET', p .. 'proc:' .. origin, '1', 'PX', ARGV[1])
redis.call('ZADD', p .. 'procs', ARGV[2], origin)
local back = {}
for i = 5, #ARGV, 7 do
  local s, nk, nick, room, kind, ts, rd = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
    ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local sk, key = p .. 'session:' .. s, p .. 'nick:' .. nk
  local hm = redis.call('HGET', sk, 'home')
  if hm and hm ~= origin and redis.call('HGET', sk, 'adopted') == hm then
    -- adopted while this process was cut off, not resumed: it is ours again
    redis.call('HDEL', sk, 'adopted')
    redis.call('SREM', p .. 'owned:' .. hm, s)
    redis.call('RPUSH', p .. 'handed:' .. hm, s)
    redis.call('PEXPIRE', p .. 'handed:' .. hm, """
    + str(TOMBSTONE_MS)
    + """)
    hm = false
  end
  if not (hm and hm ~= origin) then
    if string.match(s, '^([^.]+)%.') ~= origin then
      redis.call('HSET', sk, 'home', origin)
    else
      redis.call('HDEL', sk, 'home')
    end
    if redis.call('SREM', p .. 'reaped:' .. origin, s) == 1 then table.insert(back, s) end
    redis.call('HSET', sk, 'room', room, 'kind', kind)
    local owner = redis.call('GET', key)
    local keep = true
    if owner and owner ~= s and alive(p, owner) then
      local theirs = tonumber(redis.call('HGET', p .. 'session:' .. owner, 'ts')) or math.huge
      local mine = tonumber(ts) or math.huge
      if mine < theirs or (mine == theirs and s < owner) then
        guest(p, owner)
      else
        keep = false
        local cur = redis.call('HGET', sk, 'nk')
        if not (cur and redis.call('GET', p .. 'nick:' .. cur) == s) then guest(p, s) end
      end
    end
    if keep then
      redis.call('SET', key, s)
      redis.call('HSET', sk, 'nick', nick, 'nk', nk, 'ts', ts)
    end
    if rd ~= '' and not redis.call('HGET', sk, 'rd') then
      redis.call('SET', p .. 'token:' .. rd, s)
      redis.call('HSET', sk, 'rd', rd)
    end
    redis.call('SADD', p .. 'in:' .. room, s)
    redis.call('SADD', p .. 'everyone', s)
    redis.call('SADD', p .. 'rooms', room)
    redis.call('SADD', p .. 'owned:' .. origin, s)
  end
end
"""
    + _EVICTED
    + """
return {held, evicted, back, handed}
"""
)

# Take up to 100 sessions of processes whose lease ended out of the directory, atomically
# (so each is reaped by one caller), leave a tombstone of each, and return id, nick,
# room, kind, ``r`` and '' for each. Nothing while Redis is back for less than a lease:
# every lease ran out because Redis was away, not their processes. ARGV: prefix, now ms,
# lease ms, the adopter: when not empty, a session with a token (``rd``) is not reaped
# but taken into that process's care (``home`` and ``adopted``; returned with ``a`` and
# its token's digest), its room told nothing. Should its first process come back (it was
# only cut off), its re-assertion takes the session back, and the adopter finds it in
# its ``handed`` queue.
REAP: Final = (
    _COMMON
    + """
local p, now, lease, adopter = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] or ''
local clock_now = clock(p, lease / 2)
if clock_now - (tonumber(redis.call('GET', p .. 'back')) or 0) < lease then return {} end
local dead = redis.call('ZRANGEBYSCORE', p .. 'procs', '-inf', '(' .. now, 'LIMIT', 0, 10)
local out, budget = {}, 100
for _, origin in ipairs(dead) do
  if budget <= 0 then break end
  if origin ~= adopter and redis.call('EXISTS', p .. 'proc:' .. origin) == 0 then
    local ids = redis.call('SPOP', p .. 'owned:' .. origin, budget)
    if #ids < budget then redis.call('ZREM', p .. 'procs', origin) end
    budget = budget - #ids
    local tomb = p .. 'reaped:' .. origin
    for _, s in ipairs(ids) do
      local sk = p .. 'session:' .. s
      local h = redis.call('HMGET', sk, 'nick', 'room', 'kind', 'nk', 'rd')
      if home(p, s) ~= origin then
        -- another process holds it now (a stale entry of this one's): not reaped
      elseif adopter ~= '' and h[1] and h[2] and h[5] then
        redis.call('HSET', sk, 'home', adopter, 'adopted', adopter)
        redis.call('SADD', p .. 'owned:' .. adopter, s)
        for _, v in ipairs({s, h[1], h[2], h[3] or '', 'a', h[5]}) do table.insert(out, v) end
      else
        redis.call('SREM', p .. 'everyone', s)
        if h[1] and h[2] then
          redis.call('SREM', p .. 'in:' .. h[2], s)
          redis.call('SADD', tomb, s)
          table.insert(out, s)
          table.insert(out, h[1])
          table.insert(out, h[2])
          table.insert(out, h[3] or '')
          table.insert(out, 'r')
          table.insert(out, '')
        end
        if h[4] then
          local key = p .. 'nick:' .. h[4]
          if redis.call('GET', key) == s then redis.call('DEL', key) end
        end
        if h[5] then redis.call('DEL', p .. 'token:' .. h[5]) end
        redis.call('DEL', sk)
      end
    end
    if #ids > 0 then redis.call('PEXPIRE', tomb, """
    + str(TOMBSTONE_MS)
    + """) end
  end
end
return out
"""
)

# Let session ARGV[2] be taken by the token whose digest (hex) is ARGV[3]; its previous
# token no longer works. ARGV: prefix, session, digest.
KEEP_TOKEN: Final = """
local p, s = ARGV[1], ARGV[2]
local sk = p .. 'session:' .. s
if redis.call('EXISTS', sk) == 0 then return 0 end
local old = redis.call('HGET', sk, 'rd')
if old then redis.call('DEL', p .. 'token:' .. old) end
redis.call('SET', p .. 'token:' .. ARGV[3], s)
redis.call('HSET', sk, 'rd', ARGV[3])
redis.call('HDEL', sk, 'adopted')  -- resumed: no longer a dead process's to take back
return 1
"""

# Take the session whose token's digest is ARGV[2] for process ARGV[3]: {id, nick, room,
# kind, claim stamp, the process it came from (this one, when it holds it already)};
# false when no session has that token. Its token is used up; the process it came from
# finds it in its ``handed`` queue at its next renewal (and this one forgets an earlier
# hand-over of it). ARGV: prefix, digest, this process.
TAKE: Final = (
    _COMMON
    + """
local p, me = ARGV[1], ARGV[3]
local tk = p .. 'token:' .. ARGV[2]
local s = redis.call('GET', tk)
if not s then return false end
local sk = p .. 'session:' .. s
local h = redis.call('HMGET', sk, 'nick', 'room', 'kind', 'ts')
if not (h[1] and h[2]) then
  redis.call('DEL', tk)
  return false
end
local from = home(p, s)
redis.call('DEL', tk)
if from == me then
  redis.call('HDEL', sk, 'rd', 'adopted')
  return {s, h[1], h[2], h[3] or '', h[4] or '', me}
end
redis.call('HDEL', sk, 'rd', 'adopted')
redis.call('HSET', sk, 'home', me)
redis.call('SREM', p .. 'owned:' .. from, s)
redis.call('SADD', p .. 'owned:' .. me, s)
redis.call('LREM', p .. 'handed:' .. me, 0, s)
redis.call('RPUSH', p .. 'handed:' .. from, s)
redis.call('PEXPIRE', p .. 'handed:' .. from, """
    + str(TOMBSTONE_MS)
    + """)
return {s, h[1], h[2], h[3] or '', h[4] or '', from}
"""
)

# Remove session ARGV[2] if process ARGV[3] holds it: 1, else 0 (another process took
# it). KEYS: its nick's key; ARGV: prefix, session, this process, its room here.
UNREGISTER: Final = (
    _COMMON
    + """
local p, s, me = ARGV[1], ARGV[2], ARGV[3]
if home(p, s) ~= me then return 0 end
local sk = p .. 'session:' .. s
local h = redis.call('HMGET', sk, 'room', 'rd')
if redis.call('GET', KEYS[1]) == s then redis.call('DEL', KEYS[1]) end
if h[2] then redis.call('DEL', p .. 'token:' .. h[2]) end
redis.call('DEL', sk)
redis.call('SREM', p .. 'in:' .. ARGV[4], s)
if h[1] then redis.call('SREM', p .. 'in:' .. h[1], s) end
redis.call('SREM', p .. 'everyone', s)
redis.call('SREM', p .. 'owned:' .. me, s)
return 1
"""
)
