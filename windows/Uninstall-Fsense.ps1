#Requires -Version 5.1
<#
.SYNOPSIS
    Removes fsense from a Windows test VM: consumer, filter, service, driver package.

.DESCRIPTION
    0. Stops and removes the agent service fsense-agent, if installed.
    1. Stops any running fsense.exe consumer.
    2. fltmc unload fsense (if loaded).
    3. Removes the driver package from the driver store (pnputil /delete-driver oemNN.inf /uninstall),
       when it was installed through the INF.
    4. Deletes the service and System32\drivers\fsense.sys, when they were registered directly (the
       path Install-Fsense.ps1 takes for a package built on Linux, without a catalog).
    5. With -RemoveCertificate, removes the test certificate (fsense.cer) from
       LocalMachine\Root and LocalMachine\TrustedPublisher.
#>
[CmdletBinding()]
param(
    [string] $PackageDir = $PSScriptRoot,
    [switch] $RemoveCertificate
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
# $ServiceName, $InstanceName, $Altitude, ... and the helpers every script shares.
Import-Module (Join-Path $PSScriptRoot 'Fsense.psm1') -Force

# ---- agent service (fsense-agent): begin ----------------------------------------------------
# Must match crates/fsense/src/cli/service.rs SERVICE_NAME (fsense-pkgcheck checks it).
$AgentServiceName = 'fsense-agent'

# Removed first: otherwise the service manager restarts the consumer stopped below.
function Remove-AgentService {
    Write-Step "Removing the agent service $AgentServiceName"
    if (-not (Get-Service -Name $AgentServiceName -ErrorAction SilentlyContinue)) {
        Write-Host '    no such service'
        return
    }
    $exe = Join-Path $PackageDir 'fsense.exe'
    if (Test-Path -LiteralPath $exe -PathType Leaf) {
        Invoke-Native $exe @('service', 'uninstall')
    } else {
        Stop-Service -Name $AgentServiceName -Force -ErrorAction SilentlyContinue
        Invoke-Native 'sc.exe' @('delete', $AgentServiceName)
    }
}
# ---- agent service (fsense-agent): end ------------------------------------------------------

function Main {
    Assert-Elevated
    Remove-AgentService

    Write-Step 'Stopping the consumer (fsense.exe)'
    $consumers = @(Get-Process -Name 'fsense' -ErrorAction SilentlyContinue)
    foreach ($consumer in $consumers) {
        Write-Host "    stopping pid $($consumer.Id)"
        $consumer | Stop-Process -Force
        $consumer.WaitForExit(10000) | Out-Null
    }
    if ($consumers.Count -eq 0) { Write-Host '    none running' }

    Write-Step "Unloading the filter: fltmc unload $ServiceName"
    if (Test-FilterLoaded) {
        Invoke-Native 'fltmc.exe' @('unload', $ServiceName)
    } else {
        Write-Host '    not loaded'
    }

    Write-Step 'Removing the driver package from the driver store'
    $packages = @(Get-WindowsDriver -Online | Where-Object {
            (Split-Path -Path $_.OriginalFileName -Leaf) -eq $PackageFiles.Inf
        })
    foreach ($package in $packages) {
        Invoke-Native 'pnputil.exe' @('/delete-driver', $package.Driver, '/uninstall', '/force')
    }
    if ($packages.Count -eq 0) { Write-Host '    no fsense.inf package in the driver store' }

    Write-Step "Removing the service '$ServiceName' if it is still registered"
    if (Get-Service -Name $ServiceName -ErrorAction SilentlyContinue) {
        Invoke-Native 'sc.exe' @('delete', $ServiceName)
    } else {
        Write-Host '    no such service'
    }
    $copied = Join-Path $env:SystemRoot "System32\drivers\$($PackageFiles.Driver)"
    if (Test-Path -LiteralPath $copied) {
        Write-Host "    deleting $copied"
        Remove-Item -LiteralPath $copied -Force
    }

    if ($RemoveCertificate) {
        Write-Step 'Removing the test certificate'
        $certificatePath = Get-PackageFile $PackageDir 'Certificate'
        $certificate = [Security.Cryptography.X509Certificates.X509Certificate2]::new($certificatePath)
        foreach ($store in @('Cert:\LocalMachine\Root', 'Cert:\LocalMachine\TrustedPublisher')) {
            $installed = Join-Path $store $certificate.Thumbprint
            if (Test-Path -LiteralPath $installed) {
                Write-Host "    $installed"
                Remove-Item -LiteralPath $installed
            }
        }
    }
    Write-Host 'fsense is uninstalled.' -ForegroundColor Green
}

try {
    Main
} catch {
    Write-Host "error: $($_.Exception.Message)" -ForegroundColor Red
    exit 1
}
exit 0
