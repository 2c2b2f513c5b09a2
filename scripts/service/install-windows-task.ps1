<#
.SYNOPSIS
    Run a drivemr worker at logon with Windows Task Scheduler (no window, restarts on failure).

.DESCRIPTION
    Registers a scheduled task "drivemr worker" for the current user that starts
    `drivemr worker` when you log on. The store, slots and lease come from the user config
    file (`drivemr config show` prints where it is). Output goes to
    %LOCALAPPDATA%\drivemr\worker.log.

    No administrator rights needed: the task runs as you, only while you are logged on.

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File scripts\service\install-windows-task.ps1
.EXAMPLE
    powershell -ExecutionPolicy Bypass -File scripts\service\install-windows-task.ps1 -WhenIdle
.EXAMPLE
    powershell -ExecutionPolicy Bypass -File scripts\service\install-windows-task.ps1 -Uninstall
#>
[CmdletBinding()]
param(
    # Path of drivemr.exe (default: the one on PATH).
    [string]$Drivemr = "",
    # Claim tasks only while nobody else is using this PC.
    [switch]$WhenIdle,
    # Remove the task (and stop the worker) instead of installing it.
    [switch]$Uninstall,
    [string]$TaskName = "drivemr worker"
)

$ErrorActionPreference = "Stop"

if ($Uninstall) {
    if (Get-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue) {
        Stop-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue
        Unregister-ScheduledTask -TaskName $TaskName -Confirm:$false
        Write-Host "Removed scheduled task '$TaskName'."
    } else {
        Write-Host "No scheduled task '$TaskName'."
    }
    exit 0
}

if (-not $Drivemr) {
    $cmd = Get-Command drivemr -ErrorAction SilentlyContinue
    if (-not $cmd) {
        throw "drivemr is not on PATH: install it (pip install drivemr) or pass -Drivemr C:\path\to\drivemr.exe"
    }
    $Drivemr = $cmd.Source
}
if (-not (Test-Path $Drivemr)) { throw "not found: $Drivemr" }

# The worker needs a store; refuse to install a task that would fail at every logon.
& $Drivemr config show | Out-Host
$store = (& $Drivemr config show --json | ConvertFrom-Json).settings.store.value
if (-not $store) {
    throw 'no store configured: set store = "..." in the config file shown above (or DRIVEMR_STORE)'
}

$logDir = Join-Path $env:LOCALAPPDATA "drivemr"
New-Item -ItemType Directory -Force -Path $logDir | Out-Null
$log = Join-Path $logDir "worker.log"

$workerArgs = "worker"
if ($WhenIdle) { $workerArgs += " --when-idle" }
# A hidden PowerShell host keeps the console window away and appends the output to the log.
$command = "& '$Drivemr' $workerArgs *>> '$log'"
$action = New-ScheduledTaskAction -Execute "powershell.exe" `
    -Argument "-NoProfile -NonInteractive -WindowStyle Hidden -Command `"$command`""

$user = [System.Security.Principal.WindowsIdentity]::GetCurrent().Name
$trigger = New-ScheduledTaskTrigger -AtLogOn -User $user
$principal = New-ScheduledTaskPrincipal -UserId $user -LogonType Interactive -RunLevel Limited
$settings = New-ScheduledTaskSettingsSet `
    -ExecutionTimeLimit ([TimeSpan]::Zero) `
    -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1) `
    -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries `
    -StartWhenAvailable -MultipleInstances IgnoreNew -Priority 7

Register-ScheduledTask -TaskName $TaskName -Action $action -Trigger $trigger `
    -Principal $principal -Settings $settings `
    -Description "drivemr worker: runs tasks from the shared store while you are logged on" `
    -Force | Out-Null
Start-ScheduledTask -TaskName $TaskName

Write-Host "Installed and started scheduled task '$TaskName' ($Drivemr $workerArgs)."
Write-Host "Log: $log"
Write-Host "Check it with: drivemr workers"
