#Requires -Version 5.1
<#
.SYNOPSIS
    Turns Driver Verifier on (or off, or shows its state) for fsense.sys on a Windows test VM.

.DESCRIPTION
    `verifier /standard /driver fsense.sys` enables the standard checks, which are the ones that
    matter most for a minifilter: special pool, pool tracking (a leak bug-checks on unload),
    forced IRQL checking (paged code or memory touched at DISPATCH_LEVEL), I/O verification,
    deadlock detection, security and miscellaneous checks, and DDI compliance checking.
    When Driver Verifier verifies a minifilter, the Filter Manager's own filter verifier checks run
    too (FltMgr validates the minifilter's calls and contexts and reference counts).

    -RandomLowResources adds randomized low-resources simulation (flag 0x4): allocations fail at
    random, which exercises every unwinding path in DriverEntry and the callbacks.

    The settings take effect after a reboot (-Reboot reboots now). Make sure a kernel memory dump is
    configured, so that a verifier bug check leaves a MEMORY.DMP to analyze.

    Reading the results:
      verifier /query              current counters for fsense.sys (pool allocations, IRQL raises)
      verifier /querysettings      what is enabled
      WinDbg on C:\Windows\MEMORY.DMP after a bug check (0xC4 DRIVER_VERIFIER_DETECTED_VIOLATION,
        0xC9 DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0xD1/0xA IRQL, 0x19 pool corruption):
        !analyze -v ; !verifier 3 fsense.sys ; !fltkd.filters ; !fltkd.filter <address>
#>
[CmdletBinding(DefaultParameterSetName = 'Enable')]
param(
    [Parameter(ParameterSetName = 'Enable')] [switch] $RandomLowResources,
    [Parameter(ParameterSetName = 'Enable')] [switch] $Reboot,
    [Parameter(ParameterSetName = 'Disable')] [switch] $Disable,
    [Parameter(ParameterSetName = 'Query')] [switch] $Query
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
# $ServiceName, $InstanceName, $Altitude, ... and the helpers every script shares.
Import-Module (Join-Path $PSScriptRoot 'Fsense.psm1') -Force

$DriverFile = $PackageFiles.Driver
# Verifier's /standard set (0x209BB) plus randomized low-resources simulation (0x4).
$StandardFlags = 0x209BB
$LowResourcesFlag = 0x4

# verifier returns 2 after changing settings ("reboot required"): a success here.
$VerifierSuccess = @(0, 2)

function Show-DumpSettings {
    $crashControl = Get-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control\CrashControl'
    # 1 complete, 2 kernel, 3 small, 7 automatic: all but "small" keep enough for !verifier.
    if ($crashControl.CrashDumpEnabled -eq 0 -or $crashControl.CrashDumpEnabled -eq 3) {
        Write-Host "    warning: CrashDumpEnabled is $($crashControl.CrashDumpEnabled); set a kernel or automatic memory dump" -ForegroundColor Yellow
    } else {
        Write-Host "    memory dumps are on (CrashDumpEnabled $($crashControl.CrashDumpEnabled)), written to $($crashControl.DumpFile)"
    }
}

function Main {
    Assert-Elevated
    if ($Query) {
        Write-Step 'Driver Verifier settings and counters'
        Invoke-Native 'verifier.exe' @('/querysettings') -SuccessCodes $VerifierSuccess
        Invoke-Native 'verifier.exe' @('/query') -SuccessCodes $VerifierSuccess
        return
    }
    if ($Disable) {
        Write-Step 'Turning Driver Verifier off (takes effect after a reboot)'
        Invoke-Native 'verifier.exe' @('/reset') -SuccessCodes $VerifierSuccess
        Write-Host 'Reboot to finish.' -ForegroundColor Green
        return
    }

    if ($RandomLowResources) {
        $flags = '0x{0:X}' -f ($StandardFlags -bor $LowResourcesFlag)
        Write-Step "Enabling Driver Verifier for $DriverFile with the standard checks + randomized low resources ($flags)"
        Invoke-Native 'verifier.exe' @('/flags', $flags, '/driver', $DriverFile) -SuccessCodes $VerifierSuccess
    } else {
        Write-Step "Enabling Driver Verifier for $DriverFile with the standard checks"
        Invoke-Native 'verifier.exe' @('/standard', '/driver', $DriverFile) -SuccessCodes $VerifierSuccess
    }
    Write-Step 'Crash dump settings'
    Show-DumpSettings
    Write-Step 'Next steps'
    Write-Host '    1. Reboot (the settings apply from the next boot).'
    Write-Host '    2. Install-Fsense.ps1 (if not installed), then Test-Fsense.ps1: a violation bug-checks the VM.'
    Write-Host '    3. Enable-Verifier.ps1 -Query shows the counters; after a bug check open MEMORY.DMP in WinDbg:'
    Write-Host "       !analyze -v ; !verifier 3 $DriverFile ; !fltkd.filters"
    Write-Host '    4. Enable-Verifier.ps1 -Disable when done.'
    if ($Reboot) {
        Write-Step 'Rebooting now'
        Restart-Computer -Force
    }
}

try {
    Main
} catch {
    Write-Host "error: $($_.Exception.Message)" -ForegroundColor Red
    exit 1
}
exit 0
