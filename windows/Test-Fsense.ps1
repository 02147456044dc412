#Requires -Version 5.1
<#
.SYNOPSIS
    End-to-end test of a loaded fsense minifilter on a Windows test VM.

.DESCRIPTION
    Part 1, events: starts `fsense.exe watch <WorkDir> --output <events> --summary-json <summary>`, creates and
    writes a known set of files (long, Unicode and odd names included), stops the consumer with
    Ctrl+C, and checks that every file was reported (OCSF `file.path`) with its exact path.

    Part 2, load/unload under I/O: while a background job keeps creating and writing files, unloads
    and reloads the filter -Cycles times. Every fltmc call must finish within -HangSeconds, and after
    the last unload the driver's pool tag (-PoolTag, 'Fsns') must have no outstanding allocations.
    Run it with Driver Verifier on (Enable-Verifier.ps1) so leaks and IRQL bugs also bug-check.

    Part 3, unload with a consumer connected: starts `fsense.exe watch`, waits until it reports a
    write, then unloads and reloads the filter -Reloads times while it stays connected. Each fltmc
    call must return within -HangSeconds, the consumer must not exit, must reconnect by itself and
    report a new write within 30 s, and its summary must count one connect per load and one
    disconnect per unload.
    Part 4, the agent service: kills the fsense-agent service's process and checks that the service
    manager restarts it and that events flow again (-SkipService skips it).

    Part 5, namespace operations (issue 27): renames (a file and a directory), deletes
    (Remove-Item, a delete-on-close open, a POSIX-semantics disposition, a delete that is cancelled
    and must not be reported), a hard link, and a copy on a Dev Drive or ReFS volume when one exists
    (-RefsDir, or the first ReFS volume found), each checked in the consumer's OCSF output: Delete 4,
    Rename 5 with `file` the old and `file_result` the new name, Link 99, the copy as a clone (Update
    with `unmapped.operation` clone) or, when Windows did not clone, a write. -SkipNamespace skips it.

    Run Install-Fsense.ps1 first. Exits 0 when everything passed, 1 otherwise.
#>
[CmdletBinding()]
param(
    [string] $PackageDir = $PSScriptRoot,
    # Where the test files go; a local NTFS volume the filter is attached to.
    [string] $WorkDir = (Join-Path $env:SystemDrive 'fsense-test'),
    [int] $Cycles = 100,
    [int] $HangSeconds = 30,
    [string] $PoolTag = 'Fsns',
    [switch] $SkipCycles,
    # Part 3: unload/reload cycles with the consumer connected.
    [int] $Reloads = 3,
    [switch] $SkipReconnect,
    # Skip part 4 (the agent service is killed and must be restarted by the service manager).
    [switch] $SkipService,
    # Skip part 5 (renames, deletes, a hard link, a copy on ReFS).
    [switch] $SkipNamespace,
    # Part 5's copy test: a directory on a Dev Drive or ReFS volume (default: the first ReFS volume).
    [string] $RefsDir = ''
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
# $ServiceName, $InstanceName, $Altitude, ... and the helpers every script shares.
Import-Module (Join-Path $PSScriptRoot 'Fsense.psm1') -Force

# Ctrl+C to another console process: done from a throw-away PowerShell, because attaching to the
# consumer's console means detaching from our own first.
$SendCtrlCScript = @'
param([uint32] $TargetPid)
Add-Type -TypeDefinition @"
using System;
using System.Runtime.InteropServices;
public static class FsenseCtrlC {
    [DllImport("kernel32.dll", SetLastError = true)] public static extern bool AttachConsole(uint pid);
    [DllImport("kernel32.dll", SetLastError = true)] public static extern bool FreeConsole();
    [DllImport("kernel32.dll", SetLastError = true)] public static extern bool SetConsoleCtrlHandler(IntPtr handler, bool add);
    [DllImport("kernel32.dll", SetLastError = true)] public static extern bool GenerateConsoleCtrlEvent(uint ctrlEvent, uint group);
}
"@
[void][FsenseCtrlC]::FreeConsole()
if (-not [FsenseCtrlC]::AttachConsole($TargetPid)) { exit 1 }
[void][FsenseCtrlC]::SetConsoleCtrlHandler([IntPtr]::Zero, $true)
if (-not [FsenseCtrlC]::GenerateConsoleCtrlEvent(0, 0)) { exit 1 }
Start-Sleep -Milliseconds 500
exit 0
'@

function Send-CtrlC([int] $TargetPid) {
    $helper = Join-Path $env:TEMP 'fsense-send-ctrlc.ps1'
    Set-Content -LiteralPath $helper -Value $SendCtrlCScript -Encoding UTF8
    $process = Start-Process -FilePath 'powershell.exe' -WindowStyle Hidden -Wait -PassThru `
        -ArgumentList @('-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-File', "`"$helper`"", $TargetPid)
    return ($process.ExitCode -eq 0)
}

# Pool tag counters, which PowerShell cannot read by itself.
Add-Type -TypeDefinition @'
using System;
using System.Runtime.InteropServices;

public static class FsensePoolTags {
    [DllImport("ntdll.dll")] static extern int NtQuerySystemInformation(int infoClass, IntPtr buffer, int length, out int returned);

    // Outstanding (allocations - frees) for a pool tag, paged + non-paged, via
    // SystemPoolTagInformation (class 22). x64 SYSTEM_POOLTAG is 40 bytes: Tag, PagedAllocs,
    // PagedFrees, (pad), PagedUsed, NonPagedAllocs, NonPagedFrees, NonPagedUsed; the array starts at 8.
    public static long OutstandingAllocations(string tag) {
        uint wanted = BitConverter.ToUInt32(System.Text.Encoding.ASCII.GetBytes(tag.PadRight(4)), 0);
        int size = 1 << 20;
        for (;;) {
            IntPtr buffer = Marshal.AllocHGlobal(size);
            try {
                int returned;
                int status = NtQuerySystemInformation(22, buffer, size, out returned);
                if (status == unchecked((int)0xC0000004)) { size *= 2; continue; }
                if (status < 0) { throw new InvalidOperationException("NtQuerySystemInformation failed: 0x" + status.ToString("X8")); }
                int count = Marshal.ReadInt32(buffer);
                for (int i = 0; i < count; i++) {
                    IntPtr entry = IntPtr.Add(buffer, 8 + i * 40);
                    if ((uint)Marshal.ReadInt32(entry) != wanted) { continue; }
                    long paged = (long)(uint)Marshal.ReadInt32(entry, 4) - (uint)Marshal.ReadInt32(entry, 8);
                    long nonPaged = (long)(uint)Marshal.ReadInt32(entry, 24) - (uint)Marshal.ReadInt32(entry, 28);
                    return paged + nonPaged;
                }
                return 0;
            } finally {
                Marshal.FreeHGlobal(buffer);
            }
        }
    }
}
'@

# Runs fltmc with a deadline: a call that does not return means the driver hangs load or unload.
function Invoke-FltmcWithDeadline([string[]] $Arguments) {
    $process = Start-Process -FilePath 'fltmc.exe' -ArgumentList $Arguments -NoNewWindow -PassThru
    $null = $process.Handle  # keeps the handle open so ExitCode is available after exit
    if (-not $process.WaitForExit($HangSeconds * 1000)) {
        throw "fltmc $($Arguments -join ' ') did not return within $HangSeconds s (hang)"
    }
    if ($process.ExitCode -ne 0) {
        throw "fltmc $($Arguments -join ' ') failed with exit code $($process.ExitCode)"
    }
}

# File names that exercise the path handling: spaces, non-ASCII (BMP and surrogate pairs),
# punctuation that is legal on NTFS, a 200-character component and a path beyond MAX_PATH.
function Get-TestFiles([string] $Root) {
    $names = @(
        'plain.txt',
        'with space.txt',
        "unicode-$([char]0x00FC)$([char]0x00F1)$([char]0x00EF)-$([char]0x540D)$([char]0x524D).txt",
        "emoji-$([char]::ConvertFromUtf32(0x1F600)).txt",
        'odd;name,with=punct+[brackets]{braces}.txt',
        'no-extension',
        '.starts-with-dot',
        ('L' * 200) + '.txt'
    )
    $files = @($names | ForEach-Object { Join-Path $Root $_ })
    $deep = $Root
    foreach ($level in 1..6) { $deep = Join-Path $deep ("nested-directory-level-$level-" + ('d' * 40)) }
    $files += (Join-Path $deep 'beyond-max-path.txt')
    return $files
}

# \\?\ lets .NET Framework create paths longer than MAX_PATH.
function Get-LongPath([string] $Path) { return "\\?\$Path" }

# Starts `fsense.exe watch <Dir>` in its own console (so Ctrl+C can reach it alone), writing JSON
# lines to -Events and, on exit, the summary to -Summary. Throws if it exits at start.
function Start-Watch([string] $Exe, [string] $Dir, [string] $Events, [string] $Summary) {
    Remove-Item -LiteralPath $Events, $Summary -ErrorAction SilentlyContinue
    # On Windows the driver reports every volume; the directory argument keeps events under $Dir.
    $arguments = @('watch', "`"$Dir`"", '--output', "`"$Events`"", '--summary-json', "`"$Summary`"")
    Write-Host "    $Exe $($arguments -join ' ')"
    $consumer = Start-Process -FilePath $Exe -ArgumentList $arguments -PassThru
    $null = $consumer.Handle  # keeps the handle open so ExitCode is available after exit
    Start-Sleep -Seconds 3
    if ($consumer.HasExited) {
        throw "fsense.exe exited at start with code $($consumer.ExitCode) (is the filter loaded and the port \fsensePort reachable?)"
    }
    return $consumer
}

# Ctrl+C, then waits for a clean exit (the consumer drains and writes its summary); returns the summary.
function Stop-Watch($Consumer, [string] $Summary) {
    Write-Host "    stopping the consumer with Ctrl+C (pid $($Consumer.Id))"
    if (-not (Send-CtrlC $Consumer.Id)) {
        $Consumer | Stop-Process -Force
        throw 'could not send Ctrl+C to fsense.exe; killed it, so no summary was written'
    }
    if (-not $Consumer.WaitForExit(15000)) {
        $Consumer | Stop-Process -Force
        throw 'fsense.exe did not exit within 15 s of Ctrl+C'
    }
    if ($Consumer.ExitCode -ne 0) { throw "fsense.exe exited with code $($Consumer.ExitCode)" }
    if (-not (Test-Path -LiteralPath $Summary)) { throw "no summary file $Summary" }
    $summaryJson = Get-Content -LiteralPath $Summary -Raw -Encoding UTF8 | ConvertFrom-Json
    Write-Host "    summary: $($summaryJson | ConvertTo-Json -Compress -Depth 5)"
    return $summaryJson
}

# The `file.path` of every event so far. Opened with sharing, so it also reads while the consumer
# is still writing; a last line without its newline yet is left for the next read.
function Read-ReportedPaths([string] $Events) {
    $reported = New-Object 'System.Collections.Generic.HashSet[string]' ([StringComparer]::Ordinal)
    if (-not (Test-Path -LiteralPath $Events)) { return , $reported }
    $stream = [System.IO.File]::Open($Events, 'Open', 'Read', 'ReadWrite')
    try {
        $text = (New-Object System.IO.StreamReader($stream, [System.Text.Encoding]::UTF8)).ReadToEnd()
    } finally {
        $stream.Dispose()
    }
    $lines = @($text -split "`n")
    if ($lines.Count -lt 2) { return , $reported }
    $lineNumber = 0
    foreach ($line in $lines[0..($lines.Count - 2)]) {
        $lineNumber++
        if ($line.Trim().Length -eq 0) { continue }
        try { $record = $line | ConvertFrom-Json } catch { throw "events line ${lineNumber} is not JSON: $line" }
        if ($record.PSObject.Properties.Name -contains 'file' -and $null -ne $record.file -and
            $record.file.PSObject.Properties.Name -contains 'path') {
            [void]$reported.Add([string]$record.file.path)
        }
    }
    return , $reported
}

# Every event so far, parsed (same sharing and partial-line rules as Read-ReportedPaths).
function Read-Events([string] $Events) {
    $records = New-Object 'System.Collections.Generic.List[object]'
    if (-not (Test-Path -LiteralPath $Events)) { return , $records }
    $stream = [System.IO.File]::Open($Events, 'Open', 'Read', 'ReadWrite')
    try {
        $text = (New-Object System.IO.StreamReader($stream, [System.Text.Encoding]::UTF8)).ReadToEnd()
    } finally {
        $stream.Dispose()
    }
    $lines = @($text -split "`n")
    if ($lines.Count -lt 2) { return , $records }
    foreach ($line in $lines[0..($lines.Count - 2)]) {
        if ($line.Trim().Length -eq 0) { continue }
        $records.Add(($line | ConvertFrom-Json))
    }
    return , $records
}

# Writes -Path (again every second) until the consumer reports it, for at most -Seconds.
function Wait-Reported([string] $Events, [string] $Path, [int] $Seconds) {
    $deadline = (Get-Date).AddSeconds($Seconds)
    while ((Get-Date) -lt $deadline) {
        [System.IO.File]::WriteAllText($Path, "fsense reconnect probe $(Get-Date -Format o)")
        Start-Sleep -Seconds 1
        if ((Read-ReportedPaths $Events).Contains($Path)) { return $true }
    }
    return $false
}

function Test-Events([string] $Exe) {
    Write-Step "Part 1: every file is reported with its exact path"
    # .NET with \\?\ rather than Remove-Item, which fails on paths beyond MAX_PATH in PowerShell 5.1.
    if (Test-Path -LiteralPath $WorkDir) { [System.IO.Directory]::Delete((Get-LongPath $WorkDir), $true) }
    New-Item -ItemType Directory -Path $WorkDir | Out-Null
    $events = Join-Path $env:TEMP 'fsense-test-events.jsonl'
    $summary = Join-Path $env:TEMP 'fsense-test-summary.json'
    $consumer = Start-Watch $Exe $WorkDir $events $summary

    $files = Get-TestFiles $WorkDir
    foreach ($file in $files) {
        $long = Get-LongPath $file
        [System.IO.Directory]::CreateDirectory([System.IO.Path]::GetDirectoryName($long)) | Out-Null
        [System.IO.File]::WriteAllText($long, "fsense test payload for $file")
        Write-Host "    wrote $file"
    }
    Start-Sleep -Seconds 3

    $null = Stop-Watch $consumer $summary
    if (-not (Test-Path -LiteralPath $events)) { throw "no event file $events" }
    $reported = Read-ReportedPaths $events
    Write-Host "    $($reported.Count) distinct paths reported"

    $missing = @($files | Where-Object { -not $reported.Contains($_) })
    foreach ($file in $missing) { Write-Host "    MISSING: $file" -ForegroundColor Red }
    if ($missing.Count -gt 0) { throw "$($missing.Count) of $($files.Count) files were not reported with their exact path" }
    Write-Host "    all $($files.Count) files reported" -ForegroundColor Green
}

# The unload the review found would bug-check (FltCloseClientPort with a NULL filter from the
# disconnect callback inside FltUnregisterFilter): unload and reload while `fsense watch` is
# connected. The unload must return within -HangSeconds, the consumer must survive it, reconnect
# to the reloaded driver by itself, and report new writes.
function Test-ReconnectAfterReload([string] $Exe) {
    Write-Step "Part 3: unload and reload with fsense watch connected, $Reloads time(s)"
    $dir = Join-Path $WorkDir 'reconnect'
    New-Item -ItemType Directory -Path $dir -Force | Out-Null
    $events = Join-Path $env:TEMP 'fsense-test-reconnect-events.jsonl'
    $summary = Join-Path $env:TEMP 'fsense-test-reconnect-summary.json'
    $consumer = Start-Watch $Exe $dir $events $summary
    try {
        $probe = Join-Path $dir 'before-unload.txt'
        if (-not (Wait-Reported $events $probe 15)) { throw "fsense watch did not report $probe before the unload" }
        Write-Host '    connected and reporting'
        foreach ($reload in 1..$Reloads) {
            Write-Host "    reload ${reload}: fltmc unload $ServiceName with the consumer connected"
            Invoke-FltmcWithDeadline @('unload', $ServiceName)
            if ($consumer.HasExited) { throw "fsense.exe exited (code $($consumer.ExitCode)) when the driver unloaded; it should wait and reconnect" }
            Invoke-FltmcWithDeadline @('load', $ServiceName)
            $probe = Join-Path $dir "after-reload-$reload.txt"
            if (-not (Wait-Reported $events $probe 30)) {
                throw "fsense watch did not report $probe within 30 s of the reload (no reconnect?)"
            }
            Write-Host "    reconnected and reporting after reload $reload"
        }
    } catch {
        if (-not $consumer.HasExited) { $consumer | Stop-Process -Force }
        throw
    }
    $summaryJson = Stop-Watch $consumer $summary
    $connects = [int]$summaryJson.source.connects
    $disconnects = [int]$summaryJson.source.disconnects
    if ($connects -ne $Reloads + 1 -or $disconnects -ne $Reloads) {
        throw "the summary counts $connects connects and $disconnects disconnects; expected $($Reloads + 1) and $Reloads"
    }
    Write-Host "    $connects connects, $disconnects disconnects: the consumer followed every reload" -ForegroundColor Green
}

function Test-LoadUnloadCycles {
    Write-Step "Part 2: $Cycles unload/load cycles under I/O, $HangSeconds s deadline each"
    $ioDir = Join-Path $WorkDir 'cycles'
    New-Item -ItemType Directory -Path $ioDir -Force | Out-Null
    $io = Start-Job -ArgumentList $ioDir -ScriptBlock {
        param($Dir)
        $i = 0
        while ($true) {
            $path = Join-Path $Dir ("io-{0}.bin" -f ($i % 64))
            [System.IO.File]::WriteAllBytes($path, [byte[]]::new(65536))
            $i++
        }
    }
    try {
        foreach ($cycle in 1..$Cycles) {
            Invoke-FltmcWithDeadline @('unload', $ServiceName)
            Invoke-FltmcWithDeadline @('load', $ServiceName)
            if ($io.State -ne 'Running') { throw "the I/O job stopped: $($io.State)" }
            if ($cycle % 10 -eq 0) { Write-Host "    $cycle cycles done" }
        }
        Write-Host '    final unload, then counting outstanding allocations'
        Invoke-FltmcWithDeadline @('unload', $ServiceName)
        $outstanding = [FsensePoolTags]::OutstandingAllocations($PoolTag)
        Invoke-FltmcWithDeadline @('load', $ServiceName)
        if ($outstanding -ne 0) {
            throw "pool tag '$PoolTag' has $outstanding outstanding allocations after unload (leak)"
        }
        Write-Host "    pool tag '$PoolTag': 0 outstanding allocations after unload" -ForegroundColor Green
    } finally {
        Stop-Job -Job $io
        Remove-Job -Job $io -Force
    }
}

# ---- agent service (fsense-agent): begin ----------------------------------------------------
# Must match crates/fsense/src/cli/service.rs SERVICE_NAME (fsense-pkgcheck checks it).
$AgentServiceName = 'fsense-agent'

function Get-AgentProcessId {
    return [int](Get-CimInstance -ClassName Win32_Service -Filter "Name='$AgentServiceName'").ProcessId
}

# The driver's port takes one consumer: parts 1 and 2 run their own, so the agent pauses.
function Stop-AgentService {
    $service = Get-Service -Name $AgentServiceName -ErrorAction SilentlyContinue
    if ($service -and $service.Status -ne 'Stopped') {
        Write-Step "Stopping the agent service $AgentServiceName for parts 1 and 2"
        Stop-Service -Name $AgentServiceName -Force
        $service.WaitForStatus('Stopped', [TimeSpan]::FromSeconds(30))
    }
}

# Waits until a file written now shows up in the agent's event file.
function Wait-AgentEvent([string] $Events, [int] $Seconds) {
    $probe = Join-Path $env:PUBLIC ("fsense-agent-probe-{0}.txt" -f [Guid]::NewGuid())
    $deadline = (Get-Date).AddSeconds($Seconds)
    while ((Get-Date) -lt $deadline) {
        [System.IO.File]::WriteAllText($probe, 'fsense agent probe')
        Start-Sleep -Seconds 2
        if ((Test-Path -LiteralPath $Events) -and
            (Select-String -LiteralPath $Events -SimpleMatch ([IO.Path]::GetFileName($probe)) -Quiet)) {
            Remove-Item -LiteralPath $probe -Force
            return
        }
    }
    Remove-Item -LiteralPath $probe -Force -ErrorAction SilentlyContinue
    throw "no event for $probe in $Events within $Seconds s"
}

# Part 4: kill the agent's process; the service manager's recovery action must restart it, and
# events must flow again. Expects the agent to watch $env:PUBLIC (Install-Fsense.ps1's default
# watches $env:SystemDrive\Users).
function Test-AgentRestart {
    Write-Step "Part 4: the service manager restarts a killed $AgentServiceName and events flow again"
    if (-not (Get-Service -Name $AgentServiceName -ErrorAction SilentlyContinue)) {
        throw "service '$AgentServiceName' is not installed; run Install-Fsense.ps1 (without -NoAgent)"
    }
    $events = Join-Path $env:ProgramData 'fsense\events.jsonl'
    Start-Service -Name $AgentServiceName
    (Get-Service -Name $AgentServiceName).WaitForStatus('Running', [TimeSpan]::FromSeconds(30))
    Wait-AgentEvent $events 30
    $before = Get-AgentProcessId
    Write-Host "    events flow; killing pid $before"
    Stop-Process -Id $before -Force
    $deadline = (Get-Date).AddSeconds(60)
    do {
        Start-Sleep -Seconds 1
        $after = Get-AgentProcessId
        $status = (Get-Service -Name $AgentServiceName).Status
    } while (($status -ne 'Running' -or $after -eq 0 -or $after -eq $before) -and (Get-Date) -lt $deadline)
    if ($status -ne 'Running' -or $after -eq $before) {
        throw "the service manager did not restart $AgentServiceName within 60 s (status $status)"
    }
    Write-Host "    restarted as pid $after"
    Wait-AgentEvent $events 30
    Write-Host '    events flow again after the restart' -ForegroundColor Green
}
# ---- agent service (fsense-agent): end ------------------------------------------------------

# ---- namespace operations (issue 27) -------------------------------------------------------------
# Delete-on-close, POSIX delete and a cancelled delete need handle-level calls PowerShell lacks.
Add-Type -TypeDefinition @'
using System;
using System.ComponentModel;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

public static class FsenseFileOps {
    [DllImport("kernel32.dll", SetLastError = true, CharSet = CharSet.Unicode)]
    static extern SafeFileHandle CreateFileW(string name, uint access, uint share, IntPtr security,
        uint disposition, uint flags, IntPtr template);
    [DllImport("kernel32.dll", SetLastError = true)]
    static extern bool SetFileInformationByHandle(SafeFileHandle file, int infoClass, ref uint info, uint size);

    const uint DELETE = 0x00010000, SHARE_ALL = 7, OPEN_EXISTING = 3;
    const uint FILE_FLAG_DELETE_ON_CLOSE = 0x04000000;
    // FILE_INFO_BY_HANDLE_CLASS: FileDispositionInfo 4, FileDispositionInfoEx 21.
    const int FileDispositionInfo = 4, FileDispositionInfoEx = 21;
    // FILE_DISPOSITION_INFO_EX flags: DELETE 1, POSIX_SEMANTICS 2.
    const uint FLAG_DELETE = 1, FLAG_POSIX = 2;

    static SafeFileHandle Open(string path, uint flags) {
        SafeFileHandle h = CreateFileW(path, DELETE, SHARE_ALL, IntPtr.Zero, OPEN_EXISTING, flags, IntPtr.Zero);
        if (h.IsInvalid) { throw new Win32Exception(Marshal.GetLastWin32Error(), path); }
        return h;
    }

    // Opened with FILE_FLAG_DELETE_ON_CLOSE: the file goes at the handle's close (cleanup).
    public static void DeleteOnClose(string path) {
        using (SafeFileHandle h = Open(path, FILE_FLAG_DELETE_ON_CLOSE)) { }
    }

    // FileDispositionInfoEx with POSIX semantics: the name goes at once, even with other handles open.
    public static void PosixDelete(string path) {
        using (SafeFileHandle h = Open(path, 0)) {
            uint flags = FLAG_DELETE | FLAG_POSIX;
            if (!SetFileInformationByHandle(h, FileDispositionInfoEx, ref flags, 4)) {
                throw new Win32Exception(Marshal.GetLastWin32Error(), "FileDispositionInfoEx " + path);
            }
        }
    }

    // Disposition set, then cleared before the close: the file stays, and no delete may be reported.
    public static void CancelledDelete(string path) {
        using (SafeFileHandle h = Open(path, 0)) {
            uint delete = 1, keep = 0;
            if (!SetFileInformationByHandle(h, FileDispositionInfo, ref delete, 4)) {
                throw new Win32Exception(Marshal.GetLastWin32Error(), "FileDispositionInfo " + path);
            }
            if (!SetFileInformationByHandle(h, FileDispositionInfo, ref keep, 4)) {
                throw new Win32Exception(Marshal.GetLastWin32Error(), "FileDispositionInfo " + path);
            }
        }
    }
}
'@

# The first event of -Activity whose `file.path` (and `file_result.path` when given) match.
function Find-Event($Records, [int] $Activity, [string] $Path, [string] $ResultPath = '') {
    foreach ($record in $Records) {
        if ([int]$record.activity_id -ne $Activity) { continue }
        if ([string]$record.file.path -ne $Path) { continue }
        if ($ResultPath -ne '') {
            if ($record.PSObject.Properties.Name -notcontains 'file_result') { continue }
            if ([string]$record.file_result.path -ne $ResultPath) { continue }
        }
        return $record
    }
    return $null
}

# A directory on a Dev Drive or ReFS volume, or '' when the machine has none.
function Get-RefsTestDir {
    if ($RefsDir -ne '') { return $RefsDir }
    $volume = Get-Volume -ErrorAction SilentlyContinue |
        Where-Object { $_.FileSystem -eq 'ReFS' -and $_.DriveLetter } | Select-Object -First 1
    if ($null -eq $volume) { return '' }
    return "$($volume.DriveLetter):\fsense-test-refs"
}

function Test-NamespaceOperations([string] $Exe) {
    Write-Step 'Part 5: renames, deletes, a hard link and a ReFS copy are reported'
    $dir = Join-Path $WorkDir 'namespace'
    if (Test-Path -LiteralPath $dir) { Remove-Item -LiteralPath $dir -Recurse -Force }
    New-Item -ItemType Directory -Path $dir | Out-Null
    $events = Join-Path $env:TEMP 'fsense-test-namespace-events.jsonl'
    $summary = Join-Path $env:TEMP 'fsense-test-namespace-summary.json'
    $consumer = Start-Watch $Exe $dir $events $summary
    $expected = @()
    try {
        # Renames: a download saved under a temporary name, a directory, and a name beyond ASCII.
        $part = Join-Path $dir 'invoice.pdf.part'
        $final = Join-Path $dir 'invoice.docm'
        [System.IO.File]::WriteAllText($part, 'rename me')
        Rename-Item -LiteralPath $part -NewName 'invoice.docm'
        $expected += , @(5, $part, $final, 'rename of a file')
        $sub = Join-Path $dir 'stage'
        New-Item -ItemType Directory -Path $sub | Out-Null
        Rename-Item -LiteralPath $sub -NewName 'staged'
        $expected += , @(5, $sub, (Join-Path $dir 'staged'), 'rename of a directory')
        $wide = Join-Path $dir "r$([char]0x00E9)sum$([char]0x00E9).txt"
        [System.IO.File]::WriteAllText($wide, 'x')
        Move-Item -LiteralPath $wide -Destination (Join-Path $dir 'resume.locked')
        $expected += , @(5, $wide, (Join-Path $dir 'resume.locked'), 'rename to a new extension')

        # Deletes: Remove-Item, delete-on-close, POSIX semantics (with another handle open).
        $removed = Join-Path $dir 'removed.txt'
        [System.IO.File]::WriteAllText($removed, 'x')
        Remove-Item -LiteralPath $removed
        $expected += , @(4, $removed, '', 'Remove-Item')
        $onClose = Join-Path $dir 'delete-on-close.txt'
        [System.IO.File]::WriteAllText($onClose, 'x')
        [FsenseFileOps]::DeleteOnClose($onClose)
        $expected += , @(4, $onClose, '', 'delete-on-close')
        $posix = Join-Path $dir 'posix-delete.txt'
        [System.IO.File]::WriteAllText($posix, 'x')
        $held = [System.IO.File]::Open($posix, 'Open', 'Read', 'ReadWrite, Delete')
        try { [FsenseFileOps]::PosixDelete($posix) } finally { $held.Dispose() }
        $expected += , @(4, $posix, '', 'POSIX delete')
        $kept = Join-Path $dir 'cancelled-delete.txt'
        [System.IO.File]::WriteAllText($kept, 'x')
        [FsenseFileOps]::CancelledDelete($kept)
        if (-not (Test-Path -LiteralPath $kept)) { throw "the cancelled delete removed $kept" }

        # A hard link: `file` the existing file, `file_result` the new name.
        $target = Join-Path $dir 'linked-original.txt'
        [System.IO.File]::WriteAllText($target, 'x')
        $link = Join-Path $dir 'hard-link.txt'
        New-Item -ItemType HardLink -Path $link -Target $target | Out-Null
        $expected += , @(99, $target, $link, 'hard link')
        Start-Sleep -Seconds 3
    } catch {
        if (-not $consumer.HasExited) { $consumer | Stop-Process -Force }
        throw
    }
    $null = Stop-Watch $consumer $summary
    $records = Read-Events $events
    $failed = 0
    foreach ($want in $expected) {
        $found = Find-Event $records $want[0] $want[1] $want[2]
        if ($null -eq $found) {
            Write-Host "    MISSING: $($want[3]): activity $($want[0]) file $($want[1]) -> $($want[2])" -ForegroundColor Red
            $failed++
        } else {
            Write-Host "    $($want[3]): $($found.activity_name) $($found.file.path) (flags $($found.unmapped.flag_names -join ','))"
        }
    }
    if ($null -ne (Find-Event $records 4 $kept)) {
        Write-Host "    a cancelled delete was reported as a delete: $kept" -ForegroundColor Red
        $failed++
    }
    $link = Find-Event $records 99 $target $link
    if ($null -ne $link -and $link.activity_name -ne 'Link') {
        Write-Host "    the hard link's activity_name is $($link.activity_name), not Link" -ForegroundColor Red
        $failed++
    }
    if ($failed -gt 0) { throw "$failed namespace operation check(s) failed" }
    Write-Host "    all $($expected.Count) operations reported, the cancelled delete not" -ForegroundColor Green
    Test-RefsCopy $Exe
}

# A copy on ReFS or a Dev Drive: Windows 11 clones the blocks (FSCTL_DUPLICATE_EXTENTS_TO_FILE)
# instead of writing them; the target's data change must still be reported.
function Test-RefsCopy([string] $Exe) {
    $refs = Get-RefsTestDir
    if ($refs -eq '') {
        Write-Host '    no Dev Drive or ReFS volume: the block-clone copy was not tested' -ForegroundColor Yellow
        return
    }
    if (Test-Path -LiteralPath $refs) { Remove-Item -LiteralPath $refs -Recurse -Force }
    New-Item -ItemType Directory -Path $refs | Out-Null
    $events = Join-Path $env:TEMP 'fsense-test-refs-events.jsonl'
    $summary = Join-Path $env:TEMP 'fsense-test-refs-summary.json'
    $source = Join-Path $refs 'source.bin'
    # 4 MiB: whole clusters, so the copy engine can clone every byte.
    [System.IO.File]::WriteAllBytes($source, [byte[]]::new(4194304))
    $consumer = Start-Watch $Exe $refs $events $summary
    $copy = Join-Path $refs 'copy.bin'
    try {
        Copy-Item -LiteralPath $source -Destination $copy
        Start-Sleep -Seconds 3
    } catch {
        if (-not $consumer.HasExited) { $consumer | Stop-Process -Force }
        throw
    }
    $null = Stop-Watch $consumer $summary
    $records = Read-Events $events
    $updates = @($records | Where-Object { [int]$_.activity_id -eq 3 -and [string]$_.file.path -eq $copy })
    $clones = @($updates | Where-Object { $_.unmapped.operation -eq 'clone' })
    if ($clones.Count -gt 0) {
        $sourceNamed = @($clones | Where-Object { $_.unmapped.PSObject.Properties.Name -contains 'source_path' })
        Write-Host "    the copy on $refs was cloned: $($clones.Count) clone record(s), $($sourceNamed.Count) naming the source" -ForegroundColor Green
    } elseif ($updates.Count -gt 0) {
        Write-Host "    the copy on $refs was written, not cloned ($($updates.Count) write record(s)); the clone path was not exercised" -ForegroundColor Yellow
    } else {
        throw "the copy to $copy on $refs changed its data and was reported as neither a clone nor a write"
    }
}
# ---- namespace operations: end ----------------------------------------------------------------

function Main {
    Assert-Elevated
    $exe = Get-PackageFile $PackageDir 'Consumer'
    if (-not (Test-FilterLoaded)) { throw "filter '$ServiceName' is not loaded; run Install-Fsense.ps1 first" }

    Stop-AgentService
    Test-Events $exe
    if (-not $SkipCycles) { Test-LoadUnloadCycles }
    if (-not $SkipReconnect) { Test-ReconnectAfterReload $exe }
    if (-not $SkipService) { Test-AgentRestart }
    if (-not $SkipNamespace) { Test-NamespaceOperations $exe }

    Write-Step 'Filter state after the test'
    Invoke-Native 'fltmc.exe' @('instances', '-f', $ServiceName)
    Write-Host 'Test-Fsense: all checks passed.' -ForegroundColor Green
}

try {
    Main
} catch {
    Write-Host "error: $($_.Exception.Message)" -ForegroundColor Red
    exit 1
}
exit 0
