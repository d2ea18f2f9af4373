-- At most MAX concurrent instances per tenant, across all workloads.
-- event.activeClaims lists the tenant's other claims that hold or are getting an instance.
local MAX = 2

function policy(e)
  local n = #e.activeClaims
  if n >= MAX then
    return false, string.format("tenant %s already runs %d instances (at most %d)",
                                e.tenantId, n, MAX)
  end
  return true
end
