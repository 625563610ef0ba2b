// The slowfast Android library: the generated Kotlin bindings (package dev.slowfast.ffi, written into
// build/generated/uniffi by `generateBindings`), the public API (src/main/kotlin,
// package dev.slowfast) and the Rust library per ABI in src/main/jniLibs/<abi>/ (see README.md).
plugins {
    id("com.android.library") version "8.7.3"
    id("org.jetbrains.kotlin.android") version "2.1.0"
}

val repo = rootDir.resolve("..")
val generatedKotlin = layout.buildDirectory.dir("generated/uniffi")

android {
    namespace = "dev.slowfast"
    compileSdk = 35
    defaultConfig {
        minSdk = 24
        consumerProguardFiles("consumer-rules.pro")
    }
    sourceSets["main"].java.srcDir(generatedKotlin)
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    testOptions.unitTests.all {
        // JVM unit tests load the desktop build of the library (scripts/test-kotlin.sh does the same).
        it.systemProperty("jna.library.path", repo.resolve("target/debug").path)
        it.systemProperty("slowfast.bundle", repo.resolve("core/tests/data/bundle").path)
    }
}

kotlin { jvmToolchain(17) }

dependencies {
    implementation("net.java.dev.jna:jna:5.15.0@aar")
    testImplementation("net.java.dev.jna:jna:5.15.0")
    testImplementation("junit:junit:4.13.2")
}

/** Builds the host library and generates the Kotlin bindings from it (uniffi library mode). */
val generateBindings by tasks.registering(Exec::class) {
    workingDir = repo
    outputs.dir(generatedKotlin)
    commandLine(
        "bash", "-c",
        "cargo build -p slowfast-ffi && target/debug/uniffi-bindgen generate " +
            "--library target/debug/libslowfast_ffi.so --language kotlin --no-format " +
            "--out-dir '${generatedKotlin.get().asFile.path}'",
    )
}
tasks.named("preBuild") { dependsOn(generateBindings) }
