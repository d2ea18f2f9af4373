-- VIP tenants (ids starting "vip-") keep their instance for an hour of idleness, and the
-- claim is labelled so operators can find them; everyone else gets the workload's settings.
local VIP_IDLE_SECONDS = 3600

function policy(e)
  if e.tenantId:sub(1, 4) == "vip-" then
    return {idleTimeoutSeconds = VIP_IDLE_SECONDS, idleAction = "hibernate",
            labels = {tier = "vip"}}
  end
  return true
end
