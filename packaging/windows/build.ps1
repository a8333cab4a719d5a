# UNTESTED: written for Windows 10/11 x64 but never run (the project has no Windows machine).
# Builds the one-folder Windows bundle of SleepVLM Workstation with the same PyInstaller recipe
# as Linux (packaging/sleepvlm-ws.spec):
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1
# Needs: Python 3.10-3.12 x64 from python.org (on PATH as `py`), Visual Studio 2022 Build Tools
# with "Desktop development with C++" (MSVC and CMake), run from a normal PowerShell.
# Result: packaging\dist\SleepVLM-Workstation\sleepvlm-ws.exe and
#         packaging\dist\SleepVLM-Workstation-windows-x64.zip
$ErrorActionPreference = "Stop"
$Pkg   = Split-Path -Parent $PSScriptRoot
$Repo  = Split-Path -Parent $Pkg
$Build = Join-Path $Pkg ".build\windows"
$Dist  = Join-Path $Pkg "dist"
$App   = "SleepVLM-Workstation"
$Venv  = Join-Path $Build "venv"
$Py    = Join-Path $Venv "Scripts\python.exe"
$LlamaVersion = "0.3.36"
# The same portable x86-64 set as Linux: AVX2 and friends, no /arch for the build machine's CPU.
$LlamaCmake = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"

function Say($m) { Write-Host "build: $m" }
Set-Location $Repo
New-Item -ItemType Directory -Force -Path $Build | Out-Null

if (-not (Test-Path $Py)) {
    Say "creating the build environment $Venv"
    py -3 -m venv $Venv
    & $Py -m pip install -q --upgrade pip wheel
}

# llama-cpp-python compiled once with the portable flags, then cached
$Wheels = Join-Path $Build "wheels"
$Wheel = Get-ChildItem -Path $Wheels -Filter "llama_cpp_python-$LlamaVersion-*.whl" -ErrorAction SilentlyContinue | Select-Object -First 1
if (-not $Wheel) {
    Say "compiling llama-cpp-python $LlamaVersion (portable AVX2 build; several minutes, done once)"
    $env:CMAKE_ARGS = $LlamaCmake
    & $Py -m pip wheel --no-deps --no-binary llama-cpp-python --no-cache-dir -w $Wheels "llama-cpp-python==$LlamaVersion"
    if ($LASTEXITCODE -ne 0) { throw "llama-cpp-python did not compile" }
    Remove-Item Env:CMAKE_ARGS
    $Wheel = Get-ChildItem -Path $Wheels -Filter "llama_cpp_python-$LlamaVersion-*.whl" | Select-Object -First 1
}

Say "installing PyInstaller, llama-cpp-python and the workstation"
& $Py -m pip install -q "pyinstaller>=6.10,<7" $Wheel.FullName
& $Py -m pip install -q $Wheel.FullName $Repo
& $Py -m pip install -q --force-reinstall --no-deps $Repo
if ($LASTEXITCODE -ne 0) { throw "pip install failed" }

Say "running PyInstaller"
$OutDir = Join-Path $Dist $App
if (Test-Path $OutDir) { Remove-Item -Recurse -Force $OutDir }
& (Join-Path $Venv "Scripts\pyinstaller.exe") --noconfirm --log-level WARN --distpath $Dist `
    --workpath (Join-Path $Build "work") (Join-Path $Pkg "sleepvlm-ws.spec")
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }

Copy-Item (Join-Path $Pkg "NOTICE.txt") $OutDir
Copy-Item (Join-Path $Pkg "icons\sleepvlm-ws.png") $OutDir
Copy-Item (Join-Path $Pkg "windows\NOTES.md") (Join-Path $OutDir "README-windows.md")
& $Py (Join-Path $Pkg "collect_licences.py") (Join-Path $OutDir "licences")

# Portability: no AVX-512 (zmm registers) in the llama.cpp DLLs, where dumpbin is at hand
$Dumpbin = Get-Command dumpbin -ErrorAction SilentlyContinue
if ($Dumpbin) {
    Get-ChildItem (Join-Path $OutDir "_internal\llama_cpp\lib\*.dll") | ForEach-Object {
        $n = (& dumpbin /disasm $_.FullName | Select-String -Pattern "zmm" | Measure-Object).Count
        Say ("  {0,-24} zmm instructions: {1}" -f $_.Name, $n)
        if ($n -ne 0) { throw "$($_.Name) holds AVX-512 code" }
    }
} else { Say "dumpbin not on PATH (use a Developer PowerShell): AVX-512 check left out" }

# Smoke: the demo offscreen, >= 3 suggestions, exit 0
$env:QT_QPA_PLATFORM = "offscreen"
$env:SLEEPVLM_WS_HOME = Join-Path $Build "smoke-home"
if (Test-Path $env:SLEEPVLM_WS_HOME) { Remove-Item -Recurse -Force $env:SLEEPVLM_WS_HOME }
$Exe = Join-Path $OutDir "sleepvlm-ws.exe"
$Shot = Join-Path $Build "smoke-demo.png"
$t = Measure-Command { & $Exe demo --exit-after 3 --screenshot $Shot }
if ($LASTEXITCODE -ne 0 -or -not (Test-Path $Shot)) { throw "smoke test: the demo failed" }
& $Exe model verify (Join-Path $OutDir "_internal\models\default")
if ($LASTEXITCODE -ne 0) { throw "smoke test: model verify failed" }
Say ("demo ran in {0:N1} s" -f $t.TotalSeconds)
Remove-Item Env:QT_QPA_PLATFORM, Env:SLEEPVLM_WS_HOME

$Zip = Join-Path $Dist "$App-windows-x64.zip"
if (Test-Path $Zip) { Remove-Item $Zip }
Compress-Archive -Path $OutDir -DestinationPath $Zip
$size = (Get-ChildItem -Recurse $OutDir | Measure-Object -Property Length -Sum).Sum / 1MB
Say ("bundle folder: {0:N0} MB; zip: {1:N0} MB" -f $size, ((Get-Item $Zip).Length / 1MB))
