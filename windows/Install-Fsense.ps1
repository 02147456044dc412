#Requires -Version 5.1
<#
.SYNOPSIS
    Installs and loads the fsense minifilter on a Windows test VM.

.DESCRIPTION
    Run from a folder holding the package (fsense.sys, arm64\fsense.sys, fsense.inf, fsense.cer,
    fsense.exe, and fsense.cat when the package came from the Windows/WDK flow) next to these
    scripts. The driver image is the machine's: fsense.sys on x64, arm64\fsense.sys on ARM64
    (windows/Fsense.psm1, Get-MachineArchitecture; a kernel driver cannot run under emulation).
    fsense.exe is x64 on both: Windows 11 on Arm runs it under its x64 emulation.

    1. Checks that the machine booted with test signing on (the package is test-signed).
    2. Imports fsense.cer into LocalMachine\Root and LocalMachine\TrustedPublisher.
    3. Installs the driver:
       - with fsense.cat (Windows/WDK flow): the INF's [DefaultInstall.NTamd64] section (or
         [DefaultInstall.NTarm64] on ARM64) through
         InstallHinfSection. fsense.inf is a primitive driver INF, and on Windows 10 1903 and later
         InstallHinfSection hands such an INF to DiInstallDriver, so the package lands in the driver
         store and is removable as a unit (pnputil /delete-driver). That is the install path
         Microsoft documents for primitive drivers; the catalog must be signed by a trusted cert.
       - without fsense.cat (Linux flow: no inf2cat there): Windows refuses a driver package without
         a catalog, so the script registers the same service and instance keys the INF declares
         (sc.exe + registry) and copies the machine's fsense.sys to System32\drivers. Test VMs
         only.
    4. fltmc load fsense, then shows fltmc filters and fltmc instances.
    5. Unless -NoAgent: installs and starts the agent service fsense-agent (`fsense.exe service
       install --args <AgentArgs>`), which runs `fsense watch` as LocalSystem after the driver.

    Refuses to run on Windows older than the driver's minimum, Windows 10 version 2004 (build 19041)
    (windows/Fsense.psm1, Assert-SupportedWindows).
#>
[CmdletBinding()]
param(
    # Folder holding the package files (default: this script's folder).
    [string] $PackageDir = $PSScriptRoot,
    # `fsense watch` arguments for the agent service (directories and options).
    [string[]] $AgentArgs = @("$env:SystemDrive\Users"),
    # Load the driver only; do not install the agent service.
    [switch] $NoAgent
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
# $ServiceName, $InstanceName, $Altitude, ... and the helpers every script shares.
Import-Module (Join-Path $PSScriptRoot 'Fsense.psm1') -Force

function Test-TestSigningBoot {
    # SystemStartOptions reflects the current boot, unlike bcdedit, which shows the next one.
    $options = (Get-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control').SystemStartOptions
    return ($options -match 'TESTSIGNING')
}

function Install-WithInf([string] $InfPath, [string] $Architecture) {
    # DiInstallDriver then takes the install section that fits this build: .10.0...25952 from build
    # 25952 on, the downlevel one before (see the INF header). The section named here is the
    # machine's architecture: NTamd64 or NTarm64.
    $section = "DefaultInstall.NT$Architecture"
    Write-Step "Installing $InfPath ($section via InstallHinfSection -> DiInstallDriver)"
    $arguments = "setupapi.dll,InstallHinfSection $section 132 $InfPath"
    Write-Host "    rundll32.exe $arguments"
    $process = Start-Process -FilePath 'rundll32.exe' -ArgumentList $arguments -Wait -PassThru
    # rundll32 reports nothing useful in its exit code: check what the INF should have created.
    if ($process.ExitCode -ne 0 -or -not (Get-Service -Name $ServiceName -ErrorAction SilentlyContinue)) {
        throw "the INF install did not create service '$ServiceName'; see C:\Windows\INF\setupapi.dev.log and setupapi.app.log"
    }
}

function Install-ForTestVm([string] $DriverPath) {
    Write-Step 'No fsense.cat (package built on Linux): registering the service the way the INF declares it'
    $target = Join-Path $env:SystemRoot 'System32\drivers\fsense.sys'
    Write-Host "    copy $DriverPath -> $target"
    Copy-Item -Path $DriverPath -Destination $target -Force

    if (-not (Get-Service -Name $ServiceName -ErrorAction SilentlyContinue)) {
        Invoke-Native 'sc.exe' @('create', $ServiceName, 'type=', 'filesys', 'start=', 'demand',
            'error=', 'normal', 'binPath=', 'System32\drivers\fsense.sys', 'group=', $LoadOrderGroup,
            'depend=', 'FltMgr', 'DisplayName=', $ServiceName)
    } else {
        Write-Host "    service '$ServiceName' already exists; keeping it"
    }

    # What both INF install sections write, together: instances under Parameters\Instances (read
    # from build 25952 on) and Instances (read before), SupportedFeatures in both places, and the
    # driver's settings under Parameters.
    $serviceKey = "HKLM:\SYSTEM\CurrentControlSet\Services\$ServiceName"
    $parameters = Join-Path $serviceKey 'Parameters'
    New-Item -Path $parameters -Force | Out-Null
    foreach ($key in @($serviceKey, $parameters)) {
        Write-Host "    registry $key SupportedFeatures = $SupportedFeatures"
        New-ItemProperty -Path $key -Name 'SupportedFeatures' -PropertyType DWord -Value $SupportedFeatures -Force | Out-Null
    }
    if ($null -eq (Get-ItemProperty -Path $parameters -Name 'QueueCapacity' -ErrorAction SilentlyContinue)) {
        Write-Host "    registry $parameters QueueCapacity = $QueueCapacity"
        New-ItemProperty -Path $parameters -Name 'QueueCapacity' -PropertyType DWord -Value $QueueCapacity | Out-Null
    }
    foreach ($root in @('Parameters\Instances', 'Instances')) {
        $instances = Join-Path $serviceKey $root
        $instance = Join-Path $instances $InstanceName
        Write-Host "    registry $instance (Altitude $Altitude, Flags 0)"
        New-Item -Path $instance -Force | Out-Null
        New-ItemProperty -Path $instances -Name 'DefaultInstance' -PropertyType String -Value $InstanceName -Force | Out-Null
        New-ItemProperty -Path $instance -Name 'Altitude' -PropertyType String -Value $Altitude -Force | Out-Null
        New-ItemProperty -Path $instance -Name 'Flags' -PropertyType DWord -Value 0 -Force | Out-Null
    }
}

# ---- agent service (fsense-agent): begin ----------------------------------------------------
# Must match crates/fsense/src/cli/service.rs SERVICE_NAME (fsense-pkgcheck checks it).
$AgentServiceName = 'fsense-agent'

# `fsense.exe service install` registers the agent: auto-start, LocalSystem, dependent on the
# driver's service, restarted by the service manager after a failure. Then it is started.
function Install-AgentService([string] $Exe, [string[]] $WatchArguments) {
    Write-Step "Installing the agent service $AgentServiceName (fsense watch $($WatchArguments -join ' '))"
    if (Get-Service -Name $AgentServiceName -ErrorAction SilentlyContinue) {
        Write-Host "    service '$AgentServiceName' already exists; replacing it"
        Invoke-Native $Exe @('service', 'uninstall')
    }
    Invoke-Native $Exe (@('service', 'install', '--args') + $WatchArguments)
    Invoke-Native 'sc.exe' @('start', $AgentServiceName)
    $service = Get-Service -Name $AgentServiceName
    $service.WaitForStatus('Running', [TimeSpan]::FromSeconds(30))
    Write-Host "    $AgentServiceName is running; log: $env:ProgramData\fsense\agent.log"
}
# ---- agent service (fsense-agent): end ------------------------------------------------------

function Main {
    Assert-Elevated
    Write-Step 'Checking the Windows version'
    Assert-SupportedWindows

    $architecture = Get-MachineArchitecture
    $driver = Get-DriverImage $PackageDir $architecture
    Write-Host "    $architecture machine: driver image $driver"
    $inf = Get-PackageFile $PackageDir 'Inf'
    $certificate = Get-PackageFile $PackageDir 'Certificate'
    $catalog = Join-Path $PackageDir $PackageFiles.Catalog

    Write-Step 'Checking that this boot has test signing on'
    if (-not (Test-TestSigningBoot)) {
        Write-Host 'error: test signing is off, so Windows will not load a test-signed driver.' -ForegroundColor Red
        Write-Host '       Turn Secure Boot off in the VM firmware settings, then run:'
        Write-Host '           bcdedit /set testsigning on'
        Write-Host '       and reboot. Run this script again afterwards.'
        exit 1
    }
    Write-Host '    test signing is on'

    Write-Step "Trusting the test certificate $certificate"
    foreach ($store in @('Cert:\LocalMachine\Root', 'Cert:\LocalMachine\TrustedPublisher')) {
        $imported = Import-Certificate -FilePath $certificate -CertStoreLocation $store
        Write-Host "    $store <- $($imported.Subject) ($($imported.Thumbprint))"
    }

    if (Test-FilterLoaded) {
        throw "filter '$ServiceName' is already loaded; run Uninstall-Fsense.ps1 first"
    }
    if (Test-Path -LiteralPath $catalog -PathType Leaf) {
        Install-WithInf $inf $architecture
    } else {
        Install-ForTestVm $driver
    }

    Write-Step "Loading the filter: fltmc load $ServiceName"
    Invoke-Native 'fltmc.exe' @('load', $ServiceName)

    Write-Step 'Loaded filters'
    Invoke-Native 'fltmc.exe' @('filters')
    Write-Step "Instances of $ServiceName"
    Invoke-Native 'fltmc.exe' @('instances', '-f', $ServiceName)
    Write-Host "fsense is installed and loaded (altitude $Altitude)." -ForegroundColor Green
    if (-not $NoAgent) { Install-AgentService (Join-Path $PackageDir 'fsense.exe') $AgentArgs }
}

try {
    Main
} catch {
    Write-Host "error: $($_.Exception.Message)" -ForegroundColor Red
    exit 1
}
exit 0
