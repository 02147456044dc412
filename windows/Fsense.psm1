#Requires -Version 5.1
<#
.SYNOPSIS
    What every fsense script needs: the names the INF installs, the minimum Windows, elevation,
    native-command and filter checks, the package's file names, and which driver image (x64 or
    ARM64) this machine takes.

.DESCRIPTION
    Each script in this folder starts with
        Import-Module (Join-Path $PSScriptRoot 'Fsense.psm1') -Force
    and uses these instead of its own copies. fsense-pkgcheck checks this module against the INF
    (service, instance, altitude) and the declared minimum Windows, and checks that no script
    redefines what it provides.
#>

Set-StrictMode -Version Latest

# Must match inf/fsense.inf (fsense-pkgcheck checks it).
$ServiceName = 'fsense'
$InstanceName = 'fsense Instance'
$Altitude = '385210'
$LoadOrderGroup = 'FSFilter Activity Monitor'
# SUPPORTED_FS_FEATURES_OFFLOAD_READ | SUPPORTED_FS_FEATURES_BYPASS_IO, as the INF writes it.
$SupportedFeatures = 0x9
# The driver's default queue capacity in records, as the INF writes it under Parameters.
$QueueCapacity = 4096

# Minimum Windows: Windows 10 version 2004 (build 19041). The driver imports ExAllocatePool2, which
# older builds lack, so the kernel would refuse to load it there (fltmc load: 0x8007007F). The floor
# is declared in crates/fsense-pkgcheck/src/imports.rs; fsense-pkgcheck checks this number against it.
$MinimumBuild = 19041

# The driver image for each architecture, where the INF's [SourceDisksFiles.amd64] and
# [SourceDisksFiles.arm64] put it in the package (fsense-pkgcheck checks these against the INF).
$DriverImages = @{
    amd64 = 'fsense.sys'
    arm64 = 'arm64\fsense.sys'
}

# The files a package holds (fsense.cat only when it was built with the WDK on Windows).
$PackageFiles = @{
    Driver      = 'fsense.sys'
    Inf         = 'fsense.inf'
    Certificate = 'fsense.cer'
    Catalog     = 'fsense.cat'
    Consumer    = 'fsense.exe'
}

function Write-Step([string] $Message) {
    Write-Host "==> $Message" -ForegroundColor Cyan
}

# Throws unless this PowerShell runs elevated; each script's catch prints the message and exits 1.
function Assert-Elevated {
    $principal = [Security.Principal.WindowsPrincipal]::new([Security.Principal.WindowsIdentity]::GetCurrent())
    if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
        throw 'this script needs an elevated PowerShell (Run as administrator).'
    }
}

# Throws on a Windows build older than the minimum, before anything is installed.
function Assert-SupportedWindows {
    $build = [Environment]::OSVersion.Version.Build
    if ($build -lt $MinimumBuild) {
        throw "fsense needs Windows 10 version 2004 (build $MinimumBuild) or later; this is build $build, where the driver would not load"
    }
    Write-Host "    Windows build $build (minimum $MinimumBuild)"
}

# Runs a console program and echoes it; throws when it exits with a code not in -SuccessCodes.
# With -PassThru the output is returned (for parsing) instead of shown.
function Invoke-Native {
    param(
        [Parameter(Mandatory)] [string] $FilePath,
        [string[]] $Arguments = @(),
        [int[]] $SuccessCodes = @(0),
        [switch] $PassThru
    )
    Write-Host "    $FilePath $($Arguments -join ' ')"
    $output = & $FilePath @Arguments
    $code = $LASTEXITCODE
    if ($SuccessCodes -notcontains $code) {
        throw "$FilePath $($Arguments -join ' ') failed with exit code $code`n$($output -join "`n")"
    }
    if ($PassThru) { return $output }
    $output | Out-Host
}

# Whether `fltmc filters` lists the fsense filter.
function Test-FilterLoaded {
    $filters = & fltmc.exe filters
    return [bool]($filters | Select-String -Pattern "^\s*$ServiceName\s" -Quiet)
}

# The path of one package file (a key of $PackageFiles) in -PackageDir; throws when it is missing.
function Get-PackageFile {
    param(
        [Parameter(Mandatory)] [string] $PackageDir,
        [Parameter(Mandatory)] [string] $Kind
    )
    $path = Join-Path $PackageDir $PackageFiles[$Kind]
    if (-not (Test-Path -LiteralPath $path -PathType Leaf)) {
        throw "missing $path (copy target/package/ next to this script or pass -PackageDir)"
    }
    return $path
}

# The machine's architecture as the INF names it ('amd64' or 'arm64'), not this process's: an x64
# PowerShell on Windows 11 on Arm runs under emulation, and "apps under emulation that query for
# processor details ... receive details corresponding to the emulated virtual processor"
# (https://learn.microsoft.com/windows/arm/apps-on-arm-x86-emulation). So ARM64 wins when any of
# these says so (none of them says ARM64 on an x64 machine):
#   - RuntimeInformation.OSArchitecture, which reports Arm64 under x64 emulation from .NET 7 on
#     (https://learn.microsoft.com/dotnet/core/compatibility/interop/7.0/osarchitecture-emulation);
#     Windows PowerShell's .NET Framework may report the emulated X64;
#   - PROCESSOR_ARCHITEW6432, which WOW64 sets to the machine's for an x86 process, and
#     PROCESSOR_ARCHITECTURE;
#   - Win32_Processor.Architecture (12 = ARM64, 9 = x64), answered by the WMI service, a native
#     process.
function Get-MachineArchitecture {
    $names = @()
    try {
        $names += [string][System.Runtime.InteropServices.RuntimeInformation]::OSArchitecture
    } catch {
        Write-Verbose "RuntimeInformation.OSArchitecture unavailable: $($_.Exception.Message)"
    }
    $names += @($env:PROCESSOR_ARCHITEW6432, $env:PROCESSOR_ARCHITECTURE)
    try {
        $processor = Get-CimInstance -ClassName Win32_Processor -ErrorAction Stop | Select-Object -First 1
        switch ($processor.Architecture) {
            12 { $names += 'ARM64' }
            9 { $names += 'AMD64' }
        }
    } catch {
        Write-Verbose "Win32_Processor unavailable: $($_.Exception.Message)"
    }
    # -contains compares case-insensitively: Arm64, ARM64; X64, AMD64.
    if ($names -contains 'ARM64') { return 'arm64' }
    if ($names -contains 'AMD64' -or $names -contains 'X64') { return 'amd64' }
    throw "fsense has drivers for x64 and ARM64 only; this machine reports '$($names -join "', '")'"
}

# The path of this machine's driver image in -PackageDir; throws when it is missing.
function Get-DriverImage {
    param(
        [Parameter(Mandatory)] [string] $PackageDir,
        [Parameter(Mandatory)] [string] $Architecture
    )
    $path = Join-Path $PackageDir $DriverImages[$Architecture]
    if (-not (Test-Path -LiteralPath $path -PathType Leaf)) {
        throw "missing $path, the $Architecture driver (copy all of target/package/, its arm64 folder included)"
    }
    return $path
}

$exported = @{
    Function = @('Write-Step', 'Assert-Elevated', 'Assert-SupportedWindows', 'Invoke-Native',
        'Test-FilterLoaded', 'Get-PackageFile', 'Get-MachineArchitecture', 'Get-DriverImage')
    Variable = @('ServiceName', 'InstanceName', 'Altitude', 'LoadOrderGroup', 'SupportedFeatures',
        'QueueCapacity', 'MinimumBuild', 'PackageFiles', 'DriverImages')
}
Export-ModuleMember @exported
