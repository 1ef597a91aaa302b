-- Argo CD health of a dbops.io DatabaseRestore: Healthy once restored and verified, Degraded when failed.
local hs = {}
local function condition(conditions, type)
  if conditions == nil then return nil end
  for _, c in ipairs(conditions) do
    if c.type == type then return c end
  end
  return nil
end
if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the dbops operator"
  return hs
end
local phase = obj.status.phase
local ready = condition(obj.status.conditions, "Ready")
local failed = condition(obj.status.conditions, "Failed")
local message = obj.status.message or ""
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then message = ready.message end
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Failed" or (failed ~= nil and failed.status == "True") then
  hs.status = "Degraded"
  if failed ~= nil and failed.message ~= nil and failed.message ~= "" then message = failed.message end
elseif ready ~= nil and ready.status == "False" and ready.reason == "InvalidSpec" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
if message == "" then message = "Restore is " .. phase end
hs.message = message
return hs
