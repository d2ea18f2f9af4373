-- This workload may be claimed Monday to Friday, 08:00 to 18:00 UTC only.
local OPEN, CLOSE = 8, 18

function policy(e)
  local t = os.date("!*t", math.floor(e.now))
  local weekday = t.wday >= 2 and t.wday <= 6 -- wday: 1 is Sunday
  if weekday and t.hour >= OPEN and t.hour < CLOSE then
    return true
  end
  return false, string.format("outside business hours (Mon-Fri %02d:00-%02d:00 UTC)", OPEN, CLOSE)
end
