#Requires -Version 5.1
<#
.SYNOPSIS
    Measures fsense's I/O overhead with DiskSpd: filter detached vs attached, same machine, same run.

.DESCRIPTION
    Three workloads, each run -Repeat times in alternation (detached, attached, detached, ...) on the
    volume of -WorkDir, with the consumer (fsense.exe watch) running so events are really delivered:
      small-random-writes   DiskSpd 4 KiB random writes, 2 threads x 8 outstanding, unbuffered
      large-seq-writes      DiskSpd 1 MiB sequential writes, 1 thread x 4 outstanding, unbuffered
      create-heavy          create + write 4 KiB + close of many small files (a compiled C# loop)
    The filter is detached from and re-attached to the volume with `fltmc detach/attach`. For each
    workload the median throughput of each side is compared; overhead = 1 - attached/detached.
    Goal: <= -MaxOverheadPercent (5). Exits 1 if a workload is over, or on any error.

    DiskSpd is Microsoft's storage load generator (github.com/microsoft/diskspd); put diskspd.exe
    (amd64) on PATH or pass -DiskSpd.
#>
[CmdletBinding()]
param(
    [string] $PackageDir = $PSScriptRoot,
    [string] $WorkDir = (Join-Path $env:SystemDrive 'fsense-overhead'),
    [string] $DiskSpd = 'diskspd.exe',
    [int] $Seconds = 30,
    [int] $Repeat = 3,
    [int] $CreateCount = 20000,
    [double] $MaxOverheadPercent = 5.0
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
# $ServiceName, $InstanceName, $Altitude, ... and the helpers every script shares.
Import-Module (Join-Path $PSScriptRoot 'Fsense.psm1') -Force

Add-Type -TypeDefinition @'
using System.Diagnostics;
using System.IO;

public static class FsenseCreateLoad {
    // Creates, writes 4 KiB to and closes `count` files; returns files per second.
    public static double Run(string dir, int count) {
        var payload = new byte[4096];
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < count; i++) {
            using (var stream = new FileStream(Path.Combine(dir, "c" + i + ".dat"), FileMode.Create, FileAccess.Write, FileShare.None, 4096)) {
                stream.Write(payload, 0, payload.Length);
            }
        }
        watch.Stop();
        return count / watch.Elapsed.TotalSeconds;
    }
}
'@

# DiskSpd run; returns I/O operations per second from its XML report.
function Measure-DiskSpd([string[]] $Arguments, [string] $Target) {
    $all = @("-d$Seconds", '-W5', '-Sh', '-Rxml') + $Arguments + @($Target)
    $output = Invoke-Native $DiskSpd $all -PassThru
    [xml] $report = ($output -join "`n")
    $timeSpan = $report.Results.TimeSpan
    $ioCount = 0
    foreach ($thread in @($timeSpan.Thread)) {
        foreach ($file in @($thread.Target)) { $ioCount += [double]$file.IOCount }
    }
    return $ioCount / [double]$timeSpan.TestTimeSeconds
}

function Measure-CreateHeavy {
    $dir = Join-Path $WorkDir 'creates'
    if (Test-Path -LiteralPath $dir) { Remove-Item -LiteralPath $dir -Recurse -Force }
    New-Item -ItemType Directory -Path $dir | Out-Null
    Write-Host "    create + write + close x $CreateCount in $dir"
    $rate = [FsenseCreateLoad]::Run($dir, $CreateCount)
    Remove-Item -LiteralPath $dir -Recurse -Force
    return $rate
}

function Set-Attached([string] $Volume, [bool] $Attached) {
    $instances = & fltmc.exe instances -f $ServiceName
    $isAttached = [bool]($instances | Select-String -SimpleMatch $Volume -Quiet)
    if ($Attached -and -not $isAttached) { Invoke-Native 'fltmc.exe' @('attach', $ServiceName, $Volume) }
    if (-not $Attached -and $isAttached) { Invoke-Native 'fltmc.exe' @('detach', $ServiceName, $Volume) }
}

function Get-Median([double[]] $Values) {
    $sorted = @($Values | Sort-Object)
    $middle = [int][Math]::Floor($sorted.Count / 2)
    if ($sorted.Count % 2 -eq 1) { return $sorted[$middle] }
    return ($sorted[$middle - 1] + $sorted[$middle]) / 2
}

function Main {
    Assert-Elevated
    if (-not (Get-Command $DiskSpd -ErrorAction SilentlyContinue)) {
        throw "DiskSpd not found ('$DiskSpd'): download it from github.com/microsoft/diskspd and pass -DiskSpd"
    }
    $exe = Get-PackageFile $PackageDir 'Consumer'
    New-Item -ItemType Directory -Path $WorkDir -Force | Out-Null
    $volume = (Split-Path -Path (Resolve-Path $WorkDir).Path -Qualifier)
    $target = Join-Path $WorkDir 'diskspd.dat'
    $events = Join-Path $env:TEMP 'fsense-overhead-events.jsonl'

    $workloads = [ordered]@{
        'small-random-writes' = { Measure-DiskSpd @('-c1G', '-b4K', '-r', '-w100', '-t2', '-o8') $target }
        'large-seq-writes'    = { Measure-DiskSpd @('-c4G', '-b1M', '-si', '-w100', '-t1', '-o4') $target }
        'create-heavy'        = { Measure-CreateHeavy }
    }

    Write-Step "Starting the consumer: fsense.exe watch $WorkDir --output $events"
    $consumer = Start-Process -FilePath $exe -ArgumentList @('watch', "`"$WorkDir`"", '--output', "`"$events`"") -PassThru -WindowStyle Minimized
    Start-Sleep -Seconds 3
    if ($consumer.HasExited) { throw "fsense.exe exited at start with code $($consumer.ExitCode)" }

    $results = @()
    try {
        foreach ($name in $workloads.Keys) {
            Write-Step "Workload $name ($Repeat x detached/attached on $volume)"
            $detached = @()
            $attached = @()
            foreach ($round in 1..$Repeat) {
                Set-Attached $volume $false
                $detached += & $workloads[$name]
                Set-Attached $volume $true
                $attached += & $workloads[$name]
                Write-Host ('    round {0}: detached {1:N0}/s, attached {2:N0}/s' -f $round, $detached[-1], $attached[-1])
            }
            $base = Get-Median $detached
            $with = Get-Median $attached
            $overhead = (1 - $with / $base) * 100
            $results += [pscustomobject]@{
                Workload      = $name
                DetachedPerS  = [Math]::Round($base)
                AttachedPerS  = [Math]::Round($with)
                Ratio         = [Math]::Round($with / $base, 4)
                OverheadPct   = [Math]::Round($overhead, 2)
                WithinGoal    = ($overhead -le $MaxOverheadPercent)
            }
        }
    } finally {
        Set-Attached $volume $true
        $consumer | Stop-Process -Force -ErrorAction SilentlyContinue
        Remove-Item -LiteralPath $target -ErrorAction SilentlyContinue
    }

    Write-Step "Results (goal: overhead <= $MaxOverheadPercent %)"
    $results | Format-Table -AutoSize | Out-Host
    $over = @($results | Where-Object { -not $_.WithinGoal })
    if ($over.Count -gt 0) {
        Write-Host "error: $($over.Count) workload(s) over the $MaxOverheadPercent % goal" -ForegroundColor Red
        exit 1
    }
    Write-Host 'All workloads within the goal.' -ForegroundColor Green
}

try {
    Main
} catch {
    Write-Host "error: $($_.Exception.Message)" -ForegroundColor Red
    exit 1
}
exit 0
