-- This workload may be claimed Monday to Friday, 08:00 to 18:00 UTC only.
local OPEN, CLOSE = 8, 18
local DAYS = {false, true, true, true, true, true, false} -- by os.date's wday: 1 is Sunday

function policy(e)
  local t = os.date("!*t", math.floor(e.now))
  if DAYS[t.wday] and t.hour >= OPEN and t.hour < CLOSE then
    return true
  end
  return false, string.format("outside business hours (Mon-Fri %02d:00-%02d:00 UTC)", OPEN, CLOSE)
end
